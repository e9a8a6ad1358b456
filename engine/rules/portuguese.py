"""The words of ``engine check``'s messages in Brazilian Portuguese, for :mod:`engine.rules.translate`.

The tables map the English words a message uses (labels, types, hints) to Portuguese; the
functions translate one part of a message (a label, a hint, the tail of an "unknown ..."),
leaving every name, key and value as written in the rules.
"""

from __future__ import annotations

from engine.sources import SOURCES

# Words the English messages use for things, in Portuguese.
LABELS = {
    "Discord role": "cargo do Discord",
    "tag": "tag",
    "class": "turma",
    "state": "estado",
    "custom field": "campo personalizado",
    "offer code": "código de oferta",
    "cancel_timers event": "evento de cancel_timers",
    "transition": "transição",
    "step": "passo",
    "ignore entry": "item de ignore",
    "this transition": "esta transição",
    "this file": "este arquivo",
}
# A product's ids on each platform (sources: {hotmart: [...]}, catalog.unmanaged_products).
LABELS.update({f"{source.title} product id": f"id de produto {source.title}" for source in SOURCES.values()})

# "unknown X": the noun and its adjective's gender.
UNKNOWN = {
    "state": "estado desconhecido",
    "event": "evento desconhecido",
    "action": "ação desconhecida",
    "predicate": "predicado desconhecido",
    "event field": "campo de evento desconhecido",
    "key": "chave desconhecida",
    "top-level key": "chave de primeiro nível desconhecida",
}

CATALOG_THINGS = {"tag": "a tag", "class": "a turma", "custom field": "o campo personalizado"}

TYPES = {
    "text": "texto",
    "a list, e.g. [a, b]": "uma lista, ex.: [a, b]",
    "keys with values (a mapping)": "chaves com valores (um mapeamento)",
    "a number": "um número",
    "a whole number": "um número inteiro",
    "true or false": "true ou false",
    "nothing after the colon (the bare step)": "nada depois dos dois-pontos (o passo sem parâmetros)",
}

REQUIRED_HINTS = {
    "the event, e.g. on: PURCHASE_APPROVED": "o evento, ex.: on: PURCHASE_APPROVED",
    "the states it applies in, e.g. from: active, or from: '*'": (
        "os estados em que vale, ex.: from: active, ou from: '*'"
    ),
    "the state of a new membership, e.g. initial: new": "o estado de uma nova matrícula, ex.: initial: new",
    "the list of states, e.g. states: [new, active]": "a lista de estados, ex.: states: [new, active]",
    "the list of transitions": "a lista de transições",
    "the product's short name, e.g. key: curso": "o nome curto do produto, ex.: key: curso",
    "the name students see": "o nome que os alunos veem",
    "e.g. hotmart_product_ids: [1111111]": "ex.: hotmart_product_ids: [1111111]",
    "why the event changes nothing": "por que o evento não muda nada",
    "the bot's replies": "as respostas do bot",
    "the internal event, e.g. event: GRACE_EXPIRED": "o evento interno, ex.: event: GRACE_EXPIRED",
    "the logical flow name, e.g. flow: welcome": "o nome lógico do fluxo, ex.: flow: welcome",
    'e.g. value: "{token}"': 'ex.: value: "{token}"',
}

PATTERN_HINTS = {
    "event names are written in capitals and underscores, e.g. ": (
        "nomes de eventos são escritos em maiúsculas e _, ex.: "
    ),
    "use lowercase letters, digits and _ , starting with a letter, e.g. ": (
        "use letras minúsculas, dígitos e _ , começando por uma letra, ex.: "
    ),
    "use a state name in lowercase letters, digits and _ , or *, e.g. ": (
        "use um nome de estado em letras minúsculas, dígitos e _ , ou *, ex.: "
    ),
    "use lowercase letters, digits, _ and - , starting with a letter, e.g. ": (
        "use letras minúsculas, dígitos, _ e - , começando por uma letra, ex.: "
    ),
    "use lowercase letters, digits, _ and - , e.g. ": "use letras minúsculas, dígitos, _ e - , ex.: ",
    'a Discord id is 15 to 21 digits, in quotes, e.g. "1180000000000000001" (Discord: right-click the role > '
    "Copy Role ID)": 'um id do Discord tem de 15 a 21 dígitos, entre aspas, ex.: "1180000000000000001" (no Discord: '
    "clique com o botão direito no cargo > Copiar ID do cargo)",
    # Each source's product_id_hint (tests/engine/test_rules_translate.py checks every source has one).
    "a Hotmart product id is digits only, e.g. 1111111": "um id de produto Hotmart só tem dígitos, ex.: 1111111",
    'a Kiwify product id is letters, digits and -, in quotes, e.g. "a1b2c3"': (
        'um id de produto Kiwify tem letras, dígitos e -, entre aspas, ex.: "a1b2c3"'
    ),
    "an Eduzz product id is digits only, e.g. 123456": "um id de produto Eduzz só tem dígitos, ex.: 123456",
    "not in the expected form (see config.schema.json)": "fora da forma esperada (veja config.schema.json)",
}

YAML_HINTS = {
    "indent with spaces, never tabs": "indente com espaços, nunca com tabs",
    "a [ or { opened on this line or above is not closed, or a value holds a comma (quote it)": (
        "um [ ou { aberto nesta linha ou acima não foi fechado, ou um valor tem vírgula (coloque-o entre aspas)"
    ),
    "check the indentation here and on the line above, or quote a value that contains ': '": (
        "confira a indentação nesta linha e na de cima, ou coloque entre aspas um valor que contém ': '"
    ),
    "check the indentation here and on the line above: spaces only, no tabs; the keys of one block start in the "
    "same column": "confira a indentação nesta linha e na de cima: só espaços, nada de tabs; as chaves de um bloco "
    "começam na mesma coluna",
}


def label(text: str) -> str:
    """The Portuguese for a label (``Discord role``); a key as written stays as it is."""
    return LABELS.get(text, text)


def plural_transitions(names: str) -> str:
    return f"pela{'s' if ',' in names else ''} {'transições' if ',' in names else 'transição'} {names}"


def pattern_hint(hint: str) -> str:
    for english, portuguese in PATTERN_HINTS.items():
        if hint.startswith(english):
            return portuguese + hint[len(english) :]
    return hint


def unknown_rest(rest: str) -> str:
    """What follows ``unknown <thing> 'name'``: the list of known names, or why it is unknown."""
    replacements = [
        (
            ": neither a Hotmart event nor declared under lifecycle.events",
            ": não é um evento da Hotmart nem está declarado em lifecycle.events",
        ),
        (": a rules file holds one of: ", ": um arquivo de regras contém um destes: "),
        (" (states: ", " (estados: "),
        (" (known: ", " (opções: "),
        (" (keys here: ", " (chaves possíveis aqui: "),
        (" (write all, any, not or field)", " (escreva all, any, not ou field)"),
    ]
    for english, portuguese in replacements:
        if rest.startswith(english):
            return portuguese + rest[len(english) :]
    return rest


def catalog_rest(rest: str) -> str:
    """What follows ``... is not in catalog.<section>``: where to add it."""
    english = ": add it there (catalog.yaml)"
    if rest.startswith(english):
        tail = rest[len(english) :].replace(" or use one of: ", " ou use um destes: ")
        return ": adicione em catalog.yaml" + tail
    return rest


def owner(text: str) -> str:
    """Who misses a key: ``transition 'x'`` or a label."""
    if text.startswith("transition '"):
        return "transição" + text[len("transition") :]
    return label(text)
