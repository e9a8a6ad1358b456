"""A running process reloads changed rules, and never swaps valid rules for invalid ones."""

from __future__ import annotations

import copy
import os
import shutil

import pytest

from engine.pipeline.rules_repository import RulesRepository
from engine.rules import RulesError
from tests.conftest import RULES


def test_invalid_rules_never_replace_valid_ones(tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    repository = RulesRepository(rules_dir)
    before = repository.rules
    product = rules_dir / "products" / "curso.yaml"
    product.write_text(product.read_text().replace("name: Workshop", "name: Oficina"))
    os.utime(product, ns=(1, 1))  # a new fingerprint even within the same clock tick
    repository.reload_if_changed()
    assert repository.rules.products["curso"].name.startswith("Oficina")  # a valid change is taken
    valid = repository.rules
    lifecycle = rules_dir / "lifecycle.yaml"
    lifecycle.write_text(lifecycle.read_text().replace("to: active", "to: actve", 1))
    repository.reload_if_changed()
    assert repository.rules is valid  # kept
    assert repository.rules is not before
    assert any("unknown state 'actve'" in str(p) for p in repository.last_problems)
    assert repository.planner.rules is valid


def test_a_copy_shares_the_loaded_rules_and_then_goes_its_own_way(tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    original = RulesRepository(rules_dir)
    clone = copy.copy(original)
    assert (clone.rules, clone.planner, clone.version) == (original.rules, original.planner, original.version)
    assert clone._lock is not original._lock  # each reloads under its own lock
    product = rules_dir / "products" / "curso.yaml"
    product.write_text(product.read_text().replace("name: Workshop", "name: Oficina"))
    os.utime(product, ns=(1, 1))
    clone.reload_if_changed()
    assert clone.rules.products["curso"].name.startswith("Oficina")
    assert original.rules.products["curso"].name.startswith("Workshop")  # untouched
    assert clone.generation == original.generation + 1


def test_a_process_does_not_start_on_invalid_rules(tmp_path):
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    (rules_dir / "onboarding.yaml").unlink()
    with pytest.raises(RulesError, match="no onboarding file"):
        RulesRepository(rules_dir)
