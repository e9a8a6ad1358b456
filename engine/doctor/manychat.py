"""The ManyChat checks of ``engine doctor``: the token, and that the tags, custom fields (with the
type the rules write) and flows the rules name exist (read calls only, manychat.md 2.5-2.7)."""

from __future__ import annotations

from typing import Any

import httpx

from engine.doctor.core import FAIL, OK
from engine.doctor.remote import ReadOnlyClient, Refused, ServiceDoctor
from engine.rules.actions import the_action
from engine.rules.model import Rules
from engine.settings import Settings


class ManyChatDoctor(ServiceDoctor):
    area, title, base_setting = "manychat", "ManyChat", "MANYCHAT_API_BASE"

    def __init__(self, settings: Settings, rules: Rules | None, transport: httpx.BaseTransport | None):
        token = settings.manychat_api_token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        super().__init__(ReadOnlyClient(settings.manychat_api_base.rstrip("/"), headers, transport))
        self.rules = rules

    def _data(self, path: str) -> Any:
        response = self.client.get(path)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or body.get("status") != "success":
            raise Refused(path, response.status_code)
        return body.get("data")

    def _run(self) -> None:
        try:
            page = self._data("/fb/page/getInfo")
        except Refused:
            self._add(FAIL, "MANYCHAT_API_TOKEN is not valid: copy it again (Settings → API)")
            return
        self._add(OK, f"token valid (page {page.get('name', '?') if isinstance(page, dict) else '?'})")
        if self.rules is None:
            return
        tags = {t.get("name") for t in self._data("/fb/page/getTags") or []}
        missing = sorted(set(self.rules.manychat_tags) - tags)
        for tag in missing:
            self._add(FAIL, f"tag '{tag}' does not exist in ManyChat: create it (Settings → Tags) or fix the rules")
        if not missing:
            self._add(OK, f"{len(self.rules.manychat_tags)} tag(s) of the rules exist")
        self._fields({f.get("name"): f.get("type") for f in self._data("/fb/page/getCustomFields") or []})
        flows_data = self._data("/fb/page/getFlows") or {}
        namespaces = {f.get("ns") for f in (flows_data.get("flows") if isinstance(flows_data, dict) else []) or []}
        missing_flows = 0
        for product in sorted(self.rules.products.values(), key=lambda p: p.key):
            for name, ns in sorted(product.flows.items()):
                if ns not in namespaces:
                    missing_flows += 1
                    self._add(
                        FAIL,
                        f"flow '{name}' of product {product.key} ({ns}) does not exist in ManyChat: "
                        f"create it or fix {product.file}",
                    )
        if not missing_flows:
            count = sum(len(p.flows) for p in self.rules.products.values())
            self._add(OK, f"{count} flow(s) of the rules exist")

    def _fields(self, existing: dict[str, str]) -> None:
        wanted = _rule_fields(self.rules)
        bad = 0
        for name, kind in sorted(wanted.items()):
            if name not in existing:
                bad += 1
                self._add(FAIL, f"custom field '{name}' does not exist in ManyChat: create it as {kind}")
            elif kind and existing[name] != kind:
                bad += 1
                self._add(
                    FAIL, f"custom field '{name}' is {existing[name]}, the rules write {kind}: recreate it as {kind}"
                )
        if not bad:
            self._add(OK, f"{len(wanted)} custom field(s) of the rules exist with the right type")


_SET_FIELD = the_action(main_param="field")


def _rule_fields(rules: Rules | None) -> dict[str, str]:
    """Custom field -> the ManyChat type its set_field values need."""
    if rules is None:
        return {}
    fields = {name: "" for name in rules.manychat_fields}
    for transition in rules.transitions:
        for step in transition.steps:
            if step.action == _SET_FIELD and isinstance(step.args, dict):
                fields[step.args["name"]] = _manychat_type(step.args.get("value"))
    return fields


def _manychat_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "text"
