"""``ENGINE_LANG=pt-BR``: `engine check` messages in Brazilian Portuguese.

The course operators are Brazilian. Messages are built in English (tests, logs and the code
speak it); this module rewrites a finished message, shape by shape, keeping every name, key
and value as written in the rules. A shape it does not know stays in English rather than
being half translated.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from engine.rules.portuguese import (
    CATALOG_THINGS,
    REQUIRED_HINTS,
    TYPES,
    UNKNOWN,
    YAML_HINTS,
    catalog_rest,
    label,
    owner,
    pattern_hint,
    plural_transitions,
    unknown_rest,
)
from engine.sources import SOURCES

PORTUGUESE = ("pt-br", "pt_br", "pt")
_LABELS = {"note": "nota", "warning": "aviso"}

# Any source's name as messages write it ("Hotmart", "Kiwify", "Eduzz"), for the per-platform shapes.
_SOURCE = "(?P<source>" + "|".join(re.escape(source.title) for source in SOURCES.values()) + ")"
_SOURCE_NAME = "(?P<name>" + "|".join(re.escape(name) for name in SOURCES) + ")"

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rule(pattern: str, render: Callable[[re.Match[str]], str]) -> _Rule:
    return re.compile(pattern, re.DOTALL), render


_RULES: list[_Rule] = [
    _rule(
        r"unknown (?P<what>top-level key|event field|state|event|action|predicate|key) (?P<name>'[^']*'|\S+)"
        r"(?: in (?P<where>from|to|initial|renamed_states))?(?P<rest>.*)",
        lambda m: (
            f"{UNKNOWN[m['what']]} {m['name']}" + (f" em {m['where']}" if m["where"] else "") + unknown_rest(m["rest"])
        ),
    ),
    _rule(
        r"unknown template variable (?P<name>\{[^}]*\})(?P<rest>.*)",
        lambda m: (
            f"variável de template desconhecida {m['name']}"
            + m["rest"].replace("(known: ", "(conhecidas: ").replace("event.<field>", "event.<campo>")
        ),
    ),
    _rule(
        r"(?P<what>tag|class|custom field) (?P<name>'[^']*') is not in (?P<where>catalog\.\S+?)(?P<rest>:.*)?",
        lambda m: f"{CATALOG_THINGS[m['what']]} {m['name']} não está em {m['where']}" + catalog_rest(m["rest"] or ""),
    ),
    _rule(
        r"(?P<action>schedule|cancel_timers): event (?P<name>'[^']*') is not declared under lifecycle\.events",
        lambda m: f"{m['action']}: o evento {m['name']} não está declarado em lifecycle.events",
    ),
    _rule(
        r"flows: add (?P<flow>'[^']*') \(used by transitions? (?P<names>[^)]*)\) or mark it optional",
        lambda m: (
            f"flows: adicione {m['flow']} (usado {plural_transitions(m['names'])}) ou marque o passo como opcional"
        ),
    ),
    _rule(
        r"flow (?P<name>'[^']*') is not used by any transition",
        lambda m: f"o fluxo {m['name']} não é usado por nenhuma transição",
    ),
    _rule(r"no product declares flow (?P<name>'[^']*')", lambda m: f"nenhum produto declara o fluxo {m['name']}"),
    _rule(
        r"(?P<what>.+) (?P<value>'[^']*'): write a number and a unit, e\.g\. 24h, 7d, 30m",
        lambda m: f"{label(m['what'])} {m['value']}: escreva um número e uma unidade, ex.: 24h, 7d, 30m",
    ),
    _rule(
        r"invalid YAML: (?P<problem>.*) — (?P<hint>[^—]*)",
        lambda m: f"YAML inválido: {m['problem']} — {YAML_HINTS.get(m['hint'], m['hint'])}",
    ),
    _rule(
        r'(?P<what>.+) (?P<value>\S+): put the id in quotes, (?P<quoted>"\S+") \(YAML turns a long unquoted number '
        r"into an integer\)",
        lambda m: (
            f"{label(m['what'])} {m['value']}: coloque o id entre aspas, {m['quoted']} (o YAML transforma um "
            "número longo sem aspas em inteiro)"
        ),
    ),
    _rule(
        r'(?P<what>.+) (?P<value>\S+): put it in quotes, (?P<quoted>"\S+")',
        lambda m: f"{label(m['what'])} {m['value']}: coloque entre aspas, {m['quoted']}",
    ),
    _rule(
        r"(?P<what>.+) (?P<value>'[^']*'): write a number without quotes, e\.g\. (?P<example>.*)",
        lambda m: f"{label(m['what'])} {m['value']}: escreva um número sem aspas, ex.: {m['example']}",
    ),
    _rule(
        r"(?P<what>.+) (?P<value>\S+): write a list, e\.g\. (?P<example>.*)",
        lambda m: f"{label(m['what'])} {m['value']}: escreva uma lista, ex.: {m['example']}",
    ),
    _rule(
        r"(?P<what>.+?) (?P<value>\S+): write one of (?P<options>.*)",
        lambda m: f"{label(m['what'])} {m['value']}: escreva um destes: {m['options']}",
    ),
    _rule(
        r"(?P<what>.+?) (?P<value>\S+): write (?P<minimum>\S+) or more",
        lambda m: f"{label(m['what'])} {m['value']}: escreva {m['minimum']} ou mais",
    ),
    _rule(
        r"(?P<what>.+?) (?P<value>\S+): write (?P<types>.+ or .+|text|a number|a whole number|true or false|"
        r"a list, e\.g\. \[a, b\]|keys with values \(a mapping\)|nothing after the colon \(the bare step\))",
        lambda m: (
            f"{label(m['what'])} {m['value']}: escreva "
            + " ou ".join(TYPES.get(t, t) for t in m["types"].split(" or "))
        ),
    ),
    _rule(
        r"flow (?P<flow>\S+) has no value: paste its ManyChat flow namespace, or write none \(no such flow\)",
        lambda m: (
            f"o fluxo {m['flow']} está sem valor: cole o namespace do fluxo no ManyChat, ou escreva none (nenhum fluxo)"
        ),
    ),
    _rule(
        r"(?P<what>.+?) has no value: write (?P<types>.+)",
        lambda m: (
            f"{label(m['what'])} está sem valor: escreva "
            + " ou ".join(TYPES.get(t, t) for t in m["types"].split(" or "))
        ),
    ),
    _rule(
        r"(?P<what>.+): (?P<value>\S+) is not valid here",
        lambda m: f"{label(m['what'])}: {m['value']} não é válido aqui",
    ),
    _rule(
        r"(?P<what>.+?)(?: (?P<value>'[^']*'))?: (?P<hint>(?:event names|use |a Discord id|an? "
        + _SOURCE
        + r" product id|not in the expected).*?)(?P<example>[^ ]*)",
        lambda m: (
            f"{label(m['what'])}{' ' + m['value'] if m['value'] else ''}: {pattern_hint(m['hint'] + m['example'])}"
        ),
    ),
    _rule(
        r"(?P<owner>.+): missing key (?P<key>'[^']*')(?: \((?P<hint>.*)\))?",
        lambda m: (
            f"{owner(m['owner'])}: falta a chave {m['key']}"
            + (f" ({REQUIRED_HINTS.get(m['hint'], m['hint'])})" if m["hint"] else "")
        ),
    ),
    _rule(
        r"(?P<what>.+): list at least (?P<n>\d+) item\(s\)",
        lambda m: f"{label(m['what'])}: liste pelo menos {m['n']} item(ns)",
    ),
    _rule(
        r"(?P<what>.+): (?P<value>.+) is listed twice",
        lambda m: f"{label(m['what'])}: {m['value']} aparece duas vezes",
    ),
    _rule(r"(?P<what>.+) is empty: write some text", lambda m: f"{label(m['what'])} está vazio: escreva um texto"),
    _rule(
        r"(?P<action>\S+) needs parameters, e\.g\. (?P<example>.*)",
        lambda m: f"{m['action']} precisa de parâmetros, ex.: {m['example']}",
    ),
    _rule(
        r"one action per step: write each of (?P<actions>.*) on its own line starting with '- '",
        lambda m: f"uma ação por passo: escreva cada uma de {m['actions']} na sua própria linha, começando com '- '",
    ),
    _rule(
        r"an empty step: write an action, e\.g\. add_role", lambda m: "um passo vazio: escreva uma ação, ex.: add_role"
    ),
    _rule(
        r"a step is an action name or one action with its parameters, not (?P<what>.*)",
        lambda m: f"um passo é o nome de uma ação ou uma ação com seus parâmetros, não {m['what']}",
    ),
    _rule(
        r"schedule: give the event and either after or at, e\.g\. (?P<example>.*)",
        lambda m: f"schedule: informe o evento e after ou at, ex.: {m['example']}",
    ),
    _rule(
        r"a comparison names a field and one test, e\.g\. (?P<example>.*)",
        lambda m: f"uma comparação nomeia um campo e um teste, ex.: {m['example']}",
    ),
    _rule(
        r"(?P<what>.+): write a condition, e\.g\. (?P<example>.*)",
        lambda m: f"{label(m['what'])}: escreva uma condição, ex.: {m['example']}",
    ),
    _rule(
        r"a rules file holds exactly one of: (?P<kinds>.*)",
        lambda m: f"um arquivo de regras contém exatamente um destes: {m['kinds']}",
    ),
    _rule(
        r"(?P<what>.+): write at (?P<bound>least|most) (?P<n>\d+) key\(s\)(?P<rest>, or leave it bare)?",
        lambda m: (
            f"{label(m['what'])}: escreva {'pelo menos' if m['bound'] == 'least' else 'no máximo'} {m['n']} "
            f"chave(s){', ou deixe o passo sem parâmetros' if m['rest'] else ''}"
        ),
    ),
    _rule(
        r"event (?P<name>\S+) is Hotmart's; declare only internal events",
        lambda m: f"o evento {m['name']} é da Hotmart; declare só eventos internos",
    ),
    _rule(r"predicate (?P<name>'[^']*') is built in", lambda m: f"o predicado {m['name']} já existe (embutido)"),
    _rule(
        r"product key (?P<key>'[^']*') already used in (?P<file>\S+)",
        lambda m: f"a chave de produto {m['key']} já é usada em {m['file']}",
    ),
    _rule(
        _SOURCE + r" product (?P<id>\S+) is already claimed by product (?P<key>'[^']*') \((?P<file>[^)]*)\)",
        lambda m: f"o produto {m['source']} {m['id']} já pertence ao produto {m['key']} ({m['file']})",
    ),
    _rule(
        _SOURCE + r" product (?P<id>\S+) is listed as unmanaged but product (?P<key>'[^']*') \((?P<file>[^)]*)\) "
        r"claims it",
        lambda m: (
            f"o produto {m['source']} {m['id']} está em unmanaged_products, mas pertence ao produto {m['key']} "
            f"({m['file']})"
        ),
    ),
    _rule(
        r"product (?P<key>'[^']*') claims no product id: add sources: (?P<example>\{.*\})",
        lambda m: f"o produto {m['key']} não declara nenhum id de produto: adicione sources: {m['example']}",
    ),
    _rule(
        r"(?P<legacy>\S+) and sources\." + _SOURCE_NAME + r" both list ids: keep sources\.(?P=name)",
        lambda m: f"{m['legacy']} e sources.{m['name']} listam ids: mantenha só sources.{m['name']}",
    ),
    _rule(
        r"transition name (?P<name>'[^']*') already used at line (?P<line>\d+)",
        lambda m: f"o nome de transição {m['name']} já é usado na linha {m['line']}",
    ),
    _rule(
        r"state (?P<name>'[^']*') is unreachable: no transition leads to it \(add one with `to: (?P<to>[^`]*)`, or "
        r"remove the state\)",
        lambda m: (
            f"o estado {m['name']} é inalcançável: nenhuma transição leva a ele (adicione uma com "
            f"`to: {m['to']}`, ou remova o estado)"
        ),
    ),
    _rule(
        r"transition (?P<second>'[^']*') overlaps (?P<first>'[^']*') \(line (?P<line>\d+)\) on (?P<event>\S+) from "
        r"(?P<state>'[^']*'): both conditions can hold, so the first one always wins; make their conditions "
        r"exclusive \(if/unless the same predicate\)",
        lambda m: (
            f"a transição {m['second']} se sobrepõe a {m['first']} (linha {m['line']}) em {m['event']} a "
            f"partir de {m['state']}: as duas condições podem valer, então a primeira sempre ganha; torne as condições "
            "exclusivas (if/unless do mesmo predicado)"
        ),
    ),
    _rule(
        r"payment event (?P<event>\S+) has no transition and is not listed under ignore: give it a deliberate outcome "
        r"\(a transition, or an ignore entry with a reason\)",
        lambda m: (
            f"o evento de pagamento {m['event']} não tem transição nem está em ignore: dê a ele um destino "
            "deliberado (uma transição, ou um item de ignore com o motivo)"
        ),
    ),
    _rule(
        r"duplicate key (?P<key>'[^']*') \(also at line (?P<line>\d+)\): keep one; YAML would use only this one",
        lambda m: f"chave repetida {m['key']} (também na linha {m['line']}): mantenha uma; o YAML usaria só esta",
    ),
    _rule(
        r"a second (?P<kind>\S+) file; the first is (?P<file>\S+)",
        lambda m: f"um segundo arquivo {m['kind']}; o primeiro é {m['file']}",
    ),
    _rule(
        r"no (?P<kind>\S+) file \(a file whose top-level key is '(?P<key>[^']*):'\)",
        lambda m: f"nenhum arquivo {m['kind']} (um arquivo cuja chave de primeiro nível é '{m['key']}:')",
    ),
    _rule(
        r"renamed_states: (?P<old>'[^']*') is still a state; remove it from states, or drop the rename",
        lambda m: f"renamed_states: {m['old']} ainda é um estado; remova-o de states, ou desfaça a renomeação",
    ),
    _rule(r"empty file", lambda m: "arquivo vazio"),
    # What a valid `engine check` says besides errors: notes, warnings, its closing line.
    _rule(
        r"(?P<where>\S+:\d+): (?P<legacy>\S+) is deprecated: write (?P<fix>.+)",
        lambda m: f"{m['where']}: {m['legacy']} está obsoleto: escreva {m['fix']}",
    ),
    _rule(
        r"(?P<entry>\S+) ignored: only (?P<rules>\S+) and (?P<products>\S+) are rules",
        lambda m: f"{m['entry']} ignorado: só {m['rules']} e {m['products']} são regras",
    ),
    _rule(
        r"no rule tests in (?P<dir>\S+): `engine test` has nothing to run",
        lambda m: f"nenhum teste de regras em {m['dir']}: `engine test` não tem o que rodar",
    ),
    _rule(
        r"(?P<where>\S+:\d+): transition (?P<name>'[^']*') is not covered by any rule test",
        lambda m: f"{m['where']}: a transição {m['name']} não é coberta por nenhum teste de regras",
    ),
    _rule(
        r"ignore entry for (?P<event>\S+) is not covered by any rule test",
        lambda m: f"o item de ignore de {m['event']} não é coberto por nenhum teste de regras",
    ),
    _rule(
        r"ok: (?P<files>\d+) files, (?P<products>\d+) products, (?P<states>\d+) states, (?P<transitions>\d+) "
        r"transitions(?:, (?P<warnings>\d+) warning\(s\))?",
        lambda m: (
            f"ok: {m['files']} arquivos, {m['products']} produtos, {m['states']} estados, "
            f"{m['transitions']} transições" + (f", {m['warnings']} aviso(s)" if m["warnings"] else "")
        ),
    ),
    _rule(r"cannot read file: (?P<error>.*)", lambda m: f"não foi possível ler o arquivo: {m['error']}"),
    _rule(r"rules directory not found", lambda m: "pasta de regras não encontrada"),
]


def _did_you_mean(message: str) -> tuple[str, str]:
    match = re.search(r" — did you mean (?P<names>.+)\?$", message)
    if match is None:
        return message, ""
    return message[: match.start()], f" — você quis dizer {match['names'].replace(' or ', ' ou ')}?"


def to_portuguese(message: str) -> str:
    """``message`` in Portuguese; unchanged when its shape is unknown."""
    base, suffix = _did_you_mean(message)
    for pattern, render in _RULES:
        match = pattern.fullmatch(base)
        if match:
            return render(match) + suffix
    return message


def _language(language: str | None) -> str:
    return (language if language is not None else os.environ.get("ENGINE_LANG", "")).lower()


def localize(message: str, language: str | None = None) -> str:
    """``message`` in ``language`` (default ``$ENGINE_LANG``): English unless Portuguese is asked for."""
    return to_portuguese(message) if _language(language) in PORTUGUESE else message


def labelled(label: str, message: str, language: str | None = None) -> str:
    """``note: ...`` / ``warning: ...`` with the label and the message in ``language``."""
    if _language(language) in PORTUGUESE:
        return f"{_LABELS.get(label, label)}: {to_portuguese(message)}"
    return f"{label}: {message}"


def summary(errors: int, rules_dir: object, language: str | None = None) -> str:
    """The closing line of a failed ``engine check``."""
    if _language(language) in PORTUGUESE:
        return f"{errors} erro(s) em {rules_dir}"
    return f"{errors} error(s) in {rules_dir}"


def problem_line(problem: object, language: str | None = None) -> str:
    """``file:line: message`` with the message in ``language``."""
    return f"{problem.file}:{problem.line}: {localize(problem.message, language)}"  # type: ignore[attr-defined]
