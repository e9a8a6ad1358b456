"""Wall time of ``engine check``, ``engine dry-run`` and ``engine test`` on a rules directory with 50 products.

Each run is a whole subprocess (interpreter start, imports, loading and checking every
rules file), as an admin or a CI job runs it. Target: 0.5 s per command. ``engine test`` runs
the shipped rule tests copied four times over (over 100 cases).

    .venv/bin/python bench/rules_cli.py [--runs 10] [--products 50]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
PAYLOAD = ROOT / "examples" / "hotmart" / "purchase_approved.json"
ENGINE = Path(sys.executable).parent / "engine"  # the console script of this venv
TARGET_S = 0.5
RULE_TEST_COPIES = 4
FIRST_ID = 7_000_001


def lifecycle_flows(lifecycle_file: Path) -> list[str]:
    """Every flow name a trigger_flow step of the lifecycle names."""
    transitions = yaml.safe_load(lifecycle_file.read_text(encoding="utf-8"))["lifecycle"]["transitions"]
    flows = set()
    for transition in transitions:
        for step in transition.get("do") or []:
            if isinstance(step, dict) and "trigger_flow" in step:
                args = step["trigger_flow"]
                flows.add(args if isinstance(args, str) else args["flow"])
    return sorted(flows)


def product_yaml(index: int, flows: list[str]) -> str:
    kind = "subscription" if index % 2 else "one_time"
    tags = "[assinante]" if kind == "subscription" else "[aluno-curso]"
    flow_lines = "".join(f"    {name}: content20261201000000_{index:03d}{n:03d}\n" for n, name in enumerate(flows))
    return (
        "product:\n"
        f"  key: produto-{index:02d}\n"
        f"  name: Produto gerado {index:02d}\n"
        f"  kind: {kind}\n"
        f"  hotmart_product_ids: [{FIRST_ID + index}]\n"
        "  access:\n"
        f'    discord_roles: ["{1190000000000000000 + index}"]\n'
        f"    manychat_tags: {tags}\n"
        "    classes: [curso-2026]\n"
        "  flows:\n" + flow_lines
    )


def build_rules(target: Path, products: int) -> Path:
    rules_dir = target / "rules"
    (rules_dir / "products").mkdir(parents=True)
    for name in ("lifecycle.yaml", "catalog.yaml", "onboarding.yaml"):
        shutil.copy(RULES / name, rules_dir / name)
    flows = lifecycle_flows(RULES / "lifecycle.yaml")
    for index in range(1, products + 1):
        (rules_dir / "products" / f"produto-{index:02d}.yaml").write_text(product_yaml(index, flows), encoding="utf-8")
    for name in ("curso.yaml", "comunidade.yaml", "combo.yaml"):  # the rule tests name them
        shutil.copy(RULES / "products" / name, rules_dir / "products" / name)
    (rules_dir / "tests").mkdir()
    for copy in range(RULE_TEST_COPIES):
        for case_file in sorted((RULES / "tests").glob("*.yaml")):
            shutil.copy(case_file, rules_dir / "tests" / f"{copy}-{case_file.name}")
    return rules_dir


def build_payload(target: Path, product_id: int) -> Path:
    body = json.loads(PAYLOAD.read_text(encoding="utf-8"))
    body["data"]["product"]["id"] = product_id
    path = target / "purchase_approved.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def time_command(argv: list[str], runs: int, check) -> list[float]:
    subprocess.run(argv, capture_output=True, check=False)  # warm-up (file cache), not counted
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
        check(done.stdout)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--products", type=int, default=50)
    args = parser.parse_args()
    if not ENGINE.exists():
        raise SystemExit(f"no console script at {ENGINE}: install the project in this venv (pip install -e .)")

    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        target = Path(tmp)
        rules_dir = build_rules(target, args.products)
        payload = build_payload(target, FIRST_ID + args.products)  # the last product: a subscription
        summary = f"ok: {args.products + 6} files, {args.products + 3} products"

        def check_ok(stdout: str) -> None:
            if not stdout.startswith(summary):
                raise SystemExit(f"unexpected check output: {stdout!r}")

        def dry_run_ok(stdout: str) -> None:
            out = json.loads(stdout)
            if out["transition"] != "purchase_not_linked" or out["product"] != f"produto-{args.products:02d}":
                raise SystemExit(f"unexpected dry-run output: {stdout[:300]!r}")

        def test_ok(stdout: str) -> None:
            if not stdout.startswith("ok: ") or int(stdout.split()[1]) < 100:
                raise SystemExit(f"unexpected test output: {stdout!r}")

        commands = [
            ("engine check", [str(ENGINE), "check", "--rules", str(rules_dir)], check_ok),
            ("engine test", [str(ENGINE), "test", "--rules", str(rules_dir)], test_ok),
            (
                "engine dry-run --json",
                [str(ENGINE), "dry-run", str(payload), "--rules", str(rules_dir), "--json"],
                dry_run_ok,
            ),
        ]
        print(f"{args.products} products, {args.runs} runs each (+1 warm-up), wall time per subprocess")
        print(f"{'command':<24}{'min':>8}{'median':>8}{'max':>8}  target {TARGET_S:.1f} s")
        failed = False
        for label, argv, check in commands:
            times = time_command(argv, args.runs, check)
            verdict = "PASS" if max(times) <= TARGET_S else "over"
            failed |= verdict != "PASS"
            print(f"{label:<24}{min(times):>8.3f}{statistics.median(times):>8.3f}{max(times):>8.3f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
