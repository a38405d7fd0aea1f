"""
A rule-based stand-in for a chat model that drives the assistant's tools (assistant/tools.py), for tests and
for the assistant evaluation's `--fake` run. Given a chat completions request body that offers those tools,
`answer(request)` returns what a good model would do with the last user message:

- a `Call` (one tool call, since the assistant sends `parallel_tool_calls: false`) whose arguments carry
  every property of the offered schema (strict mode: optional ones null), valid against it;
- a short plain text when the last message is a tool result (the round after the calls), or when nothing
  in the message asks for a tool (chit-chat, thanks);
- None when the request offers none of the assistant's tools (the fake's generic default applies).

It understands typical English phrasings and a few Spanish and Portuguese ones. Relative dates ("tomorrow",
"next Friday", "el viernes", "amanhã") are resolved from the system prompt's line
`Today: YYYY-MM-DD (Weekday), now HH:MM, time zone <IANA>`; without one, from any ISO date in the system
prompt, else from the machine's clock. "Friday" and "next Friday" both mean the first Friday after today.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A request offering any of these is treated as the assistant's.
ASSISTANT_TOOLS = frozenset({
    "create_task", "update_task", "complete_task", "list_tasks", "create_project", "create_goal", "save_note",
    "search_notes", "create_content_request", "complete_content_request", "set_reminder", "report_due",
    "set_preferences",
})


@dataclass
class Call:
    """One tool call: the function's name and its arguments (a dict, sent as a JSON string)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Clock:
    """What the model knows of "now": the user's local date and time, and their zone's name."""

    today: dt.date
    now: dt.time | None = None
    zone: str = ""


# --- reading the request ----------------------------------------------------------------------------------

TODAY_LINE = re.compile(r"Today:\s*(\d{4}-\d{2}-\d{2})(?:\s*\([^)]*\))?(?:\s*,\s*now\s+(\d{1,2}):(\d{2}))?"
                        r"(?:\s*,\s*time\s*zone\s+([\w+\-/]+))?", re.IGNORECASE)
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def text_of(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def clock_from(messages: list[dict]) -> Clock:
    """The date and time the system prompt gives; the machine's clock when it gives none."""
    system = "\n".join(text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    found = TODAY_LINE.search(system)
    if found:
        today = dt.date.fromisoformat(found.group(1))
        now = dt.time(int(found.group(2)) % 24, int(found.group(3))) if found.group(2) else None
        return Clock(today, now, found.group(4) or "")
    iso = ISO_DATE.search(system)
    if iso:
        try:
            return Clock(dt.date(*map(int, iso.groups())))
        except ValueError:
            pass
    return Clock(dt.datetime.now(dt.UTC).date(), None, "UTC")


def answer(request: dict) -> Call | str | None:
    """The model's answer to a chat completions request body (see the module's docstring)."""
    offered = {tool["function"]["name"]: tool["function"].get("parameters") or {}
               for tool in request.get("tools") or []
               if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("function"), dict)}
    if not ASSISTANT_TOOLS & offered.keys():
        return None
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    users = [text_of(m) for m in messages if m.get("role") == "user"]
    said = users[-1] if users else ""
    if messages and messages[-1].get("role") == "tool":
        return after_tools([m for m in messages if m.get("role") == "tool"], language(said))
    if request.get("tool_choice") == "none":
        return small_talk(said)
    call = understand(said, clock_from(messages))
    if call is None or call.name not in offered:
        return small_talk(said)
    return Call(call.name, fill(call.arguments, offered[call.name]))


def fill(arguments: dict[str, Any], schema: dict) -> dict[str, Any]:
    """Every property of the schema, in its order: what was understood, else null (or the type's empty value
    where null is not allowed)."""
    result = {}
    for name, sub in (schema.get("properties") or {}).items():
        if name in arguments and arguments[name] is not None:
            result[name] = arguments[name]
            continue
        kinds = sub.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "null" in kinds:
            result[name] = None
        elif "boolean" in kinds:
            result[name] = False
        elif "array" in kinds:
            result[name] = []
        elif "integer" in kinds or "number" in kinds:
            result[name] = 0
        else:
            result[name] = (sub.get("enum") or [""])[0]
    return result


# --- words ------------------------------------------------------------------------------------------------

def fold(text: str) -> str:
    """Lower case without accents, so "Mañana" and "manana" match the same rule."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def language(text: str) -> str:
    words = set(re.findall(r"[a-z]+", fold(text)))
    spanish = len(words & {"el", "la", "los", "las", "mi", "mis", "tarea", "tareas", "que", "para", "manana", "hoy",
                           "recuerdame", "por", "favor", "gracias", "hola", "semana", "una", "del", "nota", "esta",
                           "sobre", "escribe", "proyecto", "objetivo", "deja", "resumen", "con", "como", "hecha"})
    portuguese = len(words & {"o", "os", "as", "minha", "minhas", "tarefa", "tarefas", "amanha", "hoje", "lembra",
                              "obrigado", "obrigada", "ola", "oi", "semana", "uma", "do", "da", "nota", "essa",
                              "sobre", "escreve", "projeto", "meta", "pare", "resumo", "com", "como", "feita",
                              "voce", "nao", "me", "lembre", "preciso", "quais"})
    english = len(words & {"the", "a", "an", "to", "my", "is", "are", "and", "it", "task", "tasks", "what", "done",
                           "make", "add", "create", "remind", "note", "please", "thanks", "hi", "of", "for", "with",
                           "about", "write", "post", "due", "today", "tomorrow", "mark", "set", "stop", "i"})
    if max(spanish, portuguese) <= english:
        return "en"
    return "es" if spanish > portuguese else "pt"


DONE = {"en": "Done.", "es": "Hecho.", "pt": "Feito."}
FAILED = {"en": "Sorry, I could not do that: {reason}", "es": "Lo siento, no pude hacerlo: {reason}",
          "pt": "Desculpe, não consegui: {reason}"}


def after_tools(results: list[dict], lang: str) -> str:
    """The short text after the tools ran: done, or why not when the last result says it failed (a tool
    result whose JSON carries "ok": false, or an "error")."""
    try:
        last = json.loads(text_of(results[-1]))
    except ValueError:
        last = None
    if isinstance(last, dict) and (last.get("ok") is False or last.get("error")):
        reason = str(last.get("error") or last.get("result") or "it did not work")[:200]
        return FAILED[lang].format(reason=reason)
    return DONE[lang]
GREETING = re.compile(r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|hola|buenos dias|buenas|ola|oi|bom dia"
                      r"|boa tarde)\b")
THANKS = re.compile(r"\b(thanks|thank you|thx|cheers|gracias|obrigad[oa]|valeu)\b")


def small_talk(text: str) -> str:
    folded, lang = fold(text), language(text)
    if THANKS.search(folded):
        return {"en": "You're welcome!", "es": "¡De nada!", "pt": "De nada!"}[lang]
    if GREETING.search(folded):
        return {"en": "Hi! Send me a note, a task or a reminder whenever you like.",
                "es": "¡Hola! Mándame una nota, una tarea o un recordatorio cuando quieras.",
                "pt": "Olá! Mande uma nota, uma tarefa ou um lembrete quando quiser."}[lang]
    return {"en": "I can keep notes, tasks, projects, goals, reminders and drafts for you.",
            "es": "Puedo guardar notas, tareas, proyectos, objetivos, recordatorios y borradores.",
            "pt": "Posso guardar notas, tarefas, projetos, metas, lembretes e rascunhos."}[lang]


STOPWORDS = {
    "the", "a", "an", "and", "or", "but", "to", "of", "for", "in", "on", "at", "by", "with", "from", "about", "into",
    "over", "this", "that", "these", "those", "it", "its", "is", "are", "was", "were", "be", "been", "my", "our",
    "your", "their", "his", "her", "me", "we", "you", "they", "i", "them", "us", "as", "so", "if", "then", "than",
    "there", "here", "what", "when", "where", "which", "who", "how", "do", "does", "did", "have", "has", "had",
    "will", "would", "should", "can", "could", "just", "also", "very", "really", "need", "needs", "want", "note",
    "notes", "remember", "el", "la", "los", "las", "un", "una", "unos", "unas", "y", "o", "de", "del", "al", "en",
    "con", "por", "para", "que", "es", "son", "mi", "mis", "tu", "su", "sus", "nos", "lo", "le", "les", "se", "esto",
    "eso", "esta", "este", "como", "mas", "muy", "nota", "recuerda", "os", "um", "uma", "uns", "umas", "e", "da",
    "dos", "das", "no", "na", "nas", "com", "meu", "minha", "meus", "minhas", "seu", "sua", "isso", "isto", "essa",
    "esse", "lembra", "lembre",
}


def tags_for(text: str) -> list[str]:
    hashtags = [tag.lower() for tag in re.findall(r"#(\w+)", text)]
    if hashtags:
        return list(dict.fromkeys(hashtags))[:5]
    words = [w for w in re.findall(r"[^\W\d_]{4,}", text.casefold()) if fold(w) not in STOPWORDS]
    return list(dict.fromkeys(words))[:3]


def tidy(text: str, capital: bool = True) -> str:
    """A title or name from what is left of a phrase: no stray connectors or punctuation at either end,
    the first letter upper case (unless `capital` is false)."""
    text = re.sub(r"\s+", " ", text).replace(" ,", ",").strip(" \t,.;:!?-–—\"'“”")
    # What is left of "..., it's urgent" once the priority is taken out.
    text = re.sub(r",\s*(?:it'?s|it is|this is|that's|es|eso es|e|isso e|é|isso é)$", "", text, flags=re.IGNORECASE)
    edge = r"(?:to|that|for|and|then|please|pls|plz|para|de|que|y|e|por favor|a|an|the)"
    for _ in range(3):
        text = re.sub(rf"^{edge}\s+", "", text, flags=re.IGNORECASE)
        text = re.sub(rf"\s+(?:{edge}|by|on|at|due|until|before|a las|as|às|el|la|o|a)$", "", text,
                      flags=re.IGNORECASE).strip(" ,.;:!?-–—\"'“”")
    return text[:1].upper() + text[1:] if capital else text


def remove(text: str, spans: list[tuple[int, int]]) -> str:
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + " " + text[end:]
    return re.sub(r"\s+", " ", text).strip()


# --- dates and times --------------------------------------------------------------------------------------

WEEKDAYS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5, "domingo": 6,
    "segunda-feira": 0, "terca-feira": 1, "quarta-feira": 2, "quinta-feira": 3, "sexta-feira": 4,
    "segunda": 0, "terca": 1, "quarta": 2, "quinta": 3, "sexta": 4,
}
MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8,
    "septiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
    "janeiro": 1, "fevereiro": 2, "marco": 3, "maio": 5, "junho": 6, "julho": 7, "setembro": 9, "outubro": 10,
    "novembro": 11, "dezembro": 12,
}
# Words that may lead into a date and go with it when it is cut out of a title.
LEAD = (r"(?:\b(?:by|on|before|until|till|due|for|this|next|coming|the|el|la|para|antes del?|hasta|el proximo|"
        r"la proxima|proximo|proxima|na|no|ate|esta|este|nesta|neste|de)\s+)*")
# Portuguese weekday names that are also ordinary words ("segunda vez") count only after one of these.
PT_DAY_LEAD = r"(?:na|no|ate|para|proxima|proximo|nesta|esta|de)\s+"
_DAY_NAMES = "|".join(sorted((name for name in WEEKDAYS if name not in ("segunda", "terca", "quarta", "quinta",
                                                                        "sexta")), key=len, reverse=True))
_MONTH_NAMES = "|".join(sorted(MONTHS, key=len, reverse=True))


def coming(today: dt.date, weekday: int) -> dt.date:
    """The first such weekday after today (a week on when today is that day)."""
    return today + dt.timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)


def month_end(year: int, month: int) -> dt.date:
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def next_date(today: dt.date, month: int, day: int | None) -> dt.date:
    """That day of that month (its last day when none is given), this year or, once past, next year."""
    for year in (today.year, today.year + 1):
        try:
            candidate = dt.date(year, month, day) if day else month_end(year, month)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    return month_end(today.year + 1, month)


def find_date(folded: str, clock: Clock) -> tuple[dt.date | None, tuple[int, int] | None]:
    """The first date the text names, and where (in the accent-free lower-case text)."""
    today = clock.today
    rules: list[tuple[str, Any]] = [
        (r"\b(?:the )?day after tomorrow\b|\bpasado manana\b|\bdepois de amanha\b", lambda m: today + dt.timedelta(2)),
        (r"\b(?:today|tonight|hoy|hoje|this (?:morning|afternoon|evening))\b", lambda m: today),
        (r"\btomorrow\b|(?<!la )(?<!da )\bmanana\b(?! por la)|\bamanha\b", lambda m: today + dt.timedelta(1)),
        (r"\b(\d{4})-(\d{2})-(\d{2})\b", lambda m: dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))),
        (r"\bin (\d+|a|one|two|three) (day|week)s?\b|\ben (\d+) dias\b|\b(?:em|daqui a) (\d+) dias\b",
         lambda m: today + dt.timedelta(days=_count(m))),
        (r"\b(?:the )?end of (?:the |this )?week\b|\bfinal de (?:la |esta )?semana\b|\bfim de semana\b",
         lambda m: today + dt.timedelta(days=(4 - today.weekday()) % 7)),
        (r"\bnext week\b|\b(?:la )?(?:semana que viene|proxima semana)\b|\b(?:a )?(?:semana que vem)\b",
         lambda m: coming(today, 0)),
        (r"\b(?:the )?end of (?:the |this )?month\b|\bfin(?:al)? de(?:l)? mes\b|\bfim do mes\b",
         lambda m: month_end(today.year, today.month)),
        (r"\b(?:the )?end of (?:the |this )?year\b|\bfin(?:al)? de(?:l)? ano\b|\bfim do ano\b",
         lambda m: dt.date(today.year, 12, 31)),
        (rf"\b({_DAY_NAMES})s?\b", lambda m: coming(today, WEEKDAYS[m.group(1)])),
        (rf"\b{PT_DAY_LEAD}(segunda|terca|quarta|quinta|sexta)\b", lambda m: coming(today, WEEKDAYS[m.group(1)])),
        (rf"\b({_MONTH_NAMES})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b",
         lambda m: next_date(today, MONTHS[m.group(1)], int(m.group(2)))),
        (rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of |de )?({_MONTH_NAMES})\b",
         lambda m: next_date(today, MONTHS[m.group(2)], int(m.group(1)))),
        (rf"\b(?:by|before|until|in|antes de|para|hasta|ate|em) (?:the end of )?({_MONTH_NAMES})\b",
         lambda m: next_date(today, MONTHS[m.group(1)], None)),
    ]
    found = []
    for pattern, make in rules:
        for match in re.finditer(pattern, folded):
            try:
                found.append((match.start(), match.end(), make(match)))
            except ValueError:
                continue
    if not found:
        return None, None
    start, end, day = min(found, key=lambda item: item[0])
    lead = re.search(rf"{LEAD}$", folded[:start])
    return day, (lead.start() if lead and lead.group(0) else start, end)


def _count(match: re.Match) -> int:
    words = {"a": 1, "one": 1, "two": 2, "three": 3}
    number = next(group for group in match.groups() if group and group not in ("day", "week"))
    count = int(number) if number.isdigit() else words[number]
    return count * 7 if "week" in match.group(0) else count


def find_time(folded: str) -> tuple[dt.time | None, tuple[int, int] | None]:
    """The first time of day the text names, and where. A bare hour from 1 to 6 is read as afternoon."""
    rules = [
        (r"\b(?:at |around |by |al |ao )?(?:noon|midday|mediodia|meio-dia|meio dia)\b", lambda m: (12, 0, "")),
        (r"\b(?:at|around|by|@|a las?|as|pelas?)\s*(\d{1,2})(?:[:h.](\d{2}))?"
         r"\s*(am|pm|a\.m\.|p\.m\.|h\b|hs\b|horas?\b)?"
         r"(?:\s*(?:de la|da|in the)\s*(manana|tarde|noche|noite|morning|afternoon|evening))?",
         lambda m: (int(m.group(1)), int(m.group(2) or 0), (m.group(3) or "") + (m.group(4) or ""))),
        (r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)", lambda m: (int(m.group(1)), int(m.group(2) or 0),
                                                                           m.group(3))),
        (r"\b([01]?\d|2[0-3]):([0-5]\d)\b", lambda m: (int(m.group(1)), int(m.group(2)), "24")),
    ]
    found = []
    for pattern, make in rules:
        for match in re.finditer(pattern, folded):
            hour, minute, marker = make(match)
            marker = marker.replace(".", "")
            if hour > 23 or minute > 59:
                continue
            if any(word in marker for word in ("pm", "tarde", "noche", "noite", "afternoon", "evening")):
                hour = hour + 12 if hour < 12 else hour
            elif any(word in marker for word in ("am", "manana", "morning")):
                hour = 0 if hour == 12 else hour
            elif marker != "24" and 1 <= hour <= 6:
                hour += 12
            found.append((match.start(), match.end(), dt.time(hour, minute)))
    if not found:
        return None, None
    start, end, at = min(found, key=lambda item: item[0])
    return at, (start, end)


def iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def hhmm(at: dt.time | None) -> str | None:
    return at.strftime("%H:%M") if at else None


# --- other details ------------------------------------------------------------------------------------------

PRIORITY_RULES = [
    ("urgent", r"\burgent(?:e|ly)?\b|\basap\b|\bcritical\b|\bprioridad (?:maxima|urgente)\b"),
    ("high", r"\b(?:high|top|highest)[\s-]+priority\b|\bpriority\s*(?::|is|to|of)?\s*high\b|\bimportant\b"
             r"|\b(?:alta )?prioridad(?:e)? alta\b|\balta prioridad(?:e)?\b|\bprioridade alta\b"),
    ("low", r"\b(?:low|lowest)[\s-]+priority\b|\bpriority\s*(?::|is|to|of)?\s*low\b|\bprioridad(?:e)? baja\b"
            r"|\bbaja prioridad\b|\bprioridade baixa\b|\bbaixa prioridade\b|\bnot urgent\b"),
    ("normal", r"\b(?:normal|medium)[\s-]+priority\b|\bpriority\s*(?::|is|to|of)?\s*normal\b"
               r"|\bprioridad(?:e)? normal\b"),
]


def find_priority(folded: str) -> tuple[str | None, tuple[int, int] | None]:
    for value, pattern in PRIORITY_RULES:
        match = re.search(rf"(?:(?:with|as|a|an|con|como|com|de)\s+)?(?:{pattern})", folded)
        if match:
            return value, match.span()
    return None, None


PROJECT_RULES = [
    r"\b(?:for|in|to|into|under|on|of)\s+(?:the|my|our)\s+(?P<name>[\w&' -]{1,40}?)\s+project\b",
    r"\b(?:for|in|to|into|under|on)\s+(?:the\s+)?project\s+[\"“']?(?P<name>[^\"”',.;:!?]+?)[\"”']?"
    r"(?=$|[,.;:!?]| and\b)",
    r"\b(?:del|en el|para el|al|en)\s+proyecto\s+[\"“']?(?P<name>[^\"”',.;:!?]+?)[\"”']?(?=$|[,.;:!?]| y\b)",
    r"\b(?:do|no|para o|ao|ao projeto|pro)\s+projeto\s+[\"“']?(?P<name>[^\"”',.;:!?]+?)[\"”']?(?=$|[,.;:!?]| e\b)",
]


def find_project(text: str) -> tuple[str | None, tuple[int, int] | None]:
    for pattern in PROJECT_RULES:
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            # "by the end of the year for the X project": the name is what follows the last connector.
            name = re.split(r"\b(?:for|in|to|into|under|on|of)\s+(?:the|my|our)\s+", match.group("name"),
                            flags=re.IGNORECASE)[-1]
            return tidy(name), match.span()
    return None, None


PRONOUN = re.compile(r"^(?:it|that|this|that one|this one|the last one|the last task|the task|that task|this task|"
                     r"the one i just (?:added|made|created)|la|lo|esa|esta|esa tarea|esta tarea|la tarea|la ultima|"
                     r"ela|isso|essa|esta tarefa|essa tarefa|a tarefa|a ultima)$")
CONTENT_NOUNS = (r"post|article|blog|caption|tweet|thread|newsletter|e-?mail|publicacion|publicacao|articulo|artigo|"
                 r"legenda|correo|boletin|draft|borrador|rascunho")


def reference(fragment: str) -> str:
    """Which task (or request) a fragment names: "last" for a pronoun, its number, or the words of its title."""
    folded = fold(fragment).strip(" ?!.,;:\"'")
    if not folded or PRONOUN.match(folded):
        return "last"
    number = re.fullmatch(r"(?:task|tarea|tarefa|request|number|no\.?|#)?\s*#?(\d+)", folded)
    if number:
        return number.group(1)
    words = re.sub(r"^(?:the|my|our|a|an|la|el|mi|mis|a|o|minha|meu)\s+", "", fragment.strip(" ?!.,;:\"'"),
                   flags=re.IGNORECASE)
    words = re.sub(r"^(?:task|tarea|tarefa)\s+(?:(?:to|of|about|de la|del|de|da|do|para)\s+)?", "", words,
                   flags=re.IGNORECASE)
    words = re.sub(r"\s+(?:task|tarea|tarefa|one)$", "", words, flags=re.IGNORECASE)
    words = re.sub(r"^(?:the|my|our|a|an|la|el|mi|a|o)\s+", "", words, flags=re.IGNORECASE)
    return words.strip() or "last"


# --- understanding a message ----------------------------------------------------------------------------

def understand(text: str, clock: Clock) -> Call | None:
    """The one tool call the message asks for, with only the arguments it gives (None: no tool)."""
    text = re.sub(r"\s+", " ", text or "").strip()
    if not text:
        return None
    folded = fold(text)
    for rule in (note, preferences, reminder, task_create, content_done, task_complete, task_update, project,
                 goal, notes_search, content_request, due_report, tasks_list):
        call = rule(text, folded, clock)
        if call is not None:
            return call
    return None


NOTE_PREFIX = re.compile(
    r"^(?:please\s+)?(?:(?:note|nota|anota|anotar|apunta|memo)\s*[:\-–]\s*"
    r"|(?:make a note|take a note|note down|jot down|write down|note)(?:\s+that)?\s*[:\-–]?\s+"
    r"|(?:remember|recuerda|lembra|lembre|lembre-se|acuerdate de)\s+(?:that|que)\s+"
    r"|(?:toma nota|anota|apunta|guarda)(?:\s+(?:de\s+)?que)?\s*[:\-–]?\s+"
    r"|(?:guarda esta nota|guarda una nota|salva uma nota|salva essa nota)\s*[:\-–]?\s*)", re.IGNORECASE)


def note(text: str, folded: str, clock: Clock) -> Call | None:
    match = NOTE_PREFIX.match(folded)
    if not match:
        return None
    # The note keeps the user's own case and accents: the prefix is cut off the original text.
    body = NOTE_PREFIX.sub("", text, count=1) if NOTE_PREFIX.match(text) else text[match.end():]
    body = body.strip()
    if not body:
        return None
    return Call("save_note", {"text": body, "tags": tags_for(body)})


PREF_OFF = re.compile(r"\b(?:stop|turn off|switch off|disable|no more|don'?t|do not|cancel|pause|unsubscribe|mute|"
                      r"no longer|deja de|dejar de|desactiva|apaga|no me (?:mandes|envies)|ya no|para de|pare|parar|"
                      r"desativa|desative|desliga|nao (?:me )?(?:mande|envie|quero))\b")
PREF_ON = re.compile(r"\b(?:start|turn on|switch on|enable|send me|i want|i'd like|resume|activa|quiero|mandame|"
                     r"enviame|ativa|ative|liga|quero|me (?:manda|envia)|let me know|tell me|notify me|avisame|"
                     r"me avisa|avise-me)\b")
SETTINGS = [
    ("daily_summary", r"\b(?:daily|morning) (?:summary|digest|briefing|recap)\b|\bresumen diario\b|\bresumo diario\b"),
    ("weekly_summary", r"\bweekly (?:summary|digest|report|recap)\b|\bresumen semanal\b|\bresumo semanal\b"),
    ("notify_on_ready", r"\b(?:drafts?|posts?|borrador(?:es)?|rascunhos?)\b.*\b(?:ready|listos?|prontos?)\b"
                        r"|\b(?:ready|listo|pronto)\b.*\b(?:notice|notification|notificacion|aviso)s?\b"),
    ("reminders", r"\breminders\b|\brecordatorios\b|\blembretes\b"),
]
IANA = re.compile(r"\b((?:Africa|America|Antarctica|Asia|Atlantic|Australia|Europe|Indian|Pacific)/[A-Za-z_]+"
                  r"(?:/[A-Za-z_]+)?|UTC)\b")
CITY_ZONES = {"lisbon": "Europe/Lisbon", "lisboa": "Europe/Lisbon", "madrid": "Europe/Madrid",
              "london": "Europe/London", "londres": "Europe/London", "paris": "Europe/Paris",
              "berlin": "Europe/Berlin", "new york": "America/New_York", "nueva york": "America/New_York",
              "sao paulo": "America/Sao_Paulo", "mexico city": "America/Mexico_City",
              "ciudad de mexico": "America/Mexico_City", "buenos aires": "America/Argentina/Buenos_Aires",
              "los angeles": "America/Los_Angeles", "chicago": "America/Chicago", "tokyo": "Asia/Tokyo",
              "sydney": "Australia/Sydney", "auckland": "Pacific/Auckland", "bogota": "America/Bogota"}


def preferences(text: str, folded: str, clock: Clock) -> Call | None:
    if re.match(r"^(?:please\s+)?(?:create|add|make|new)\b.*\b(?:task|tarea|tarefa)\b", folded):
        return None
    if re.search(r"\bset (?:a|an) reminder\b|\bremind me\b|\brecordatorio para\b|\blembrete para\b", folded):
        return None
    arguments: dict[str, Any] = {}
    zone_words = re.search(r"\btime ?zone\b|\bzona horaria\b|\bfuso horario\b|\bhorario de\b|\bi(?:'m| am) (?:now )?"
                           r"(?:in|based in|living in)\b|\bestoy en\b|\bestou em\b", folded)
    if zone_words:
        iana = IANA.search(text)
        city = next((zone for name, zone in CITY_ZONES.items() if re.search(rf"\b{name}\b", folded)), None)
        zone = iana.group(1) if iana else city
        if zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                zone = None
        if zone:
            arguments["time_zone"] = zone
    off = PREF_OFF.search(folded)
    for name, pattern in SETTINGS:
        if re.search(pattern, folded):
            arguments[name] = not off
            if name == "daily_summary" and not off:
                at, _ = find_time(folded)
                if at:
                    arguments["daily_summary_time"] = hhmm(at)
            break
    if not arguments and re.search(r"\b(?:summary|resumen|resumo)\b", folded) and re.search(
            r"\b(?:at|a las|as)\s*\d", folded):
        at, _ = find_time(folded)
        arguments = {"daily_summary": True, "daily_summary_time": hhmm(at)}
    if not arguments:
        return None
    if "notify_on_ready" in arguments and not off and not PREF_ON.search(folded):
        return None
    return Call("set_preferences", arguments)


def reminder(text: str, folded: str, clock: Clock) -> Call | None:
    match = re.match(
        r"^(?:please\s+)?(?:(?:set|add|create|make|schedule)\s+(?:me\s+)?(?:a|an)\s+reminder\b|remind me (?:about|of)\b"
        r"|remind me in \d+|remind me at\b|(?:ponme|crea|crear|pon|programa)\s+un recordatorio\b|recuerdamelo\b"
        r"|(?:cria|crie|criar|coloca|coloque|poe|ponha)\s+(?:um\s+)?lembrete\b|me lembra disso\b"
        r"|lembra-me disso\b|me lembre disso\b)", folded)
    if not match:
        return None
    about_last = bool(re.search(r"\b(?:about it|of it|about that|of that|about this task|about the task|"
                                r"recuerdamelo|disso|de eso|de esto|de esa tarea)\b", folded))
    when_text = folded
    day, day_span = find_date(when_text, clock)
    at, at_span = find_time(when_text)
    relative = re.search(r"\bin (\d+) (minute|min|hour)s?\b|\ben (\d+) (minuto|hora)s?\b|\bem (\d+) (minuto|hora)s?\b",
                         folded)
    spans = [span for span in (day_span, at_span) if span]
    if relative and clock.now:
        amount = int(next(g for g in relative.groups()[::2] if g))
        unit = next(g for g in relative.groups()[1::2] if g)
        moment = dt.datetime.combine(clock.today, clock.now) + (
            dt.timedelta(hours=amount) if unit.startswith("hora") or unit == "hour" else dt.timedelta(minutes=amount))
        day, at = moment.date(), moment.time().replace(second=0, microsecond=0)
        spans.append(relative.span())
    if at is None:
        at = dt.time(9, 0)
    if day is None:
        late = clock.now is not None and at <= clock.now
        day = clock.today + dt.timedelta(days=1 if late else 0)
    rest = remove(folded, [match.span(), *spans])
    what = re.search(r"\b(?:to|that|about|of|para|que|de|pra|sobre)\s+(.+)$", rest)
    words = what.group(1) if what else rest
    words = re.sub(r"^(?:for|para|pra)\s+", "", words)
    task = "last" if about_last else None
    if task is None:
        numbered = re.search(r"\b(?:task|tarea|tarefa) #?(\d+)\b", folded)
        task = numbered.group(1) if numbered else None
    reminder_text = _original_words(text, tidy(words), True) or ("the task" if task else "Reminder")
    if about_last and reminder_text.casefold() in ("it", "that", "disso", "eso", "esto", "isso"):
        reminder_text = "the task"
    return Call("set_reminder", {"text": reminder_text, "date": iso(day), "time": hhmm(at), "task": task})


def _original_words(text: str, folded_words: str, capital: bool = False) -> str:
    """The same words in the original text (with its accents and case) when they can be found there."""
    if not folded_words:
        return ""
    target = fold(folded_words).strip()
    for start in range(len(text)):
        for end in range(len(text), start, -1):
            piece = fold(text[start:end])
            if piece.strip() == target:
                return tidy(text[start:end], capital)
            if len(piece) < len(target):
                break
    return tidy(folded_words, capital)


TASK_CREATE = [
    r"^(?:please\s+)?(?:can you\s+|could you\s+)?(?:create|add|make|log|open|set up|put|schedule|new)\b"
    r"(?P<mid>[^.?!]{0,40}?)"
    r"\b(?:task|to-?do)\b(?:\s*(?:to|for|called|named|that|:|-|–))?\s*(?P<body>.*)$",
    r"^(?:task|to-?do|new task)\s*[:\-–]\s*(?P<body>.+)$",
    r"^(?:please\s+)?remind me to\s+(?P<body>.+)$",
    r"^(?:i need to|i have to|i must|i've got to|i gotta|don't let me forget to)\s+(?P<body>.+)$",
    r"^(?:por favor\s+)?(?:crea|crear|creame|anade|anadir|agrega|agregar|pon|apunta|mete)\s+(?:una\s+)?(?:nueva\s+)?"
    r"tarea\b(?:\s*(?:para|de|:|-|–))?\s*(?P<body>.+)$",
    r"^(?:nueva tarea|tarea)\s*[:\-–]\s*(?P<body>.+)$",
    r"^(?:recuerdame|no me dejes olvidar)\s+(?:que\s+)?(?P<body>.+)$",
    r"^(?:tengo que|debo|necesito)\s+(?P<body>(?!un |una |el |la ).+)$",
    r"^(?:por favor\s+)?(?:cria|crie|criar|adiciona|adicione|adicionar|coloca|coloque|poe|anota)\s+(?:uma\s+)?"
    r"(?:nova\s+)?tarefa\b(?:\s*(?:para|pra|de|:|-|–))?\s*(?P<body>.+)$",
    r"^(?:nova tarefa|tarefa)\s*[:\-–]\s*(?P<body>.+)$",
    r"^(?:me lembra|me lembre|lembra-me|lembre-me)\s+(?:de\s+)?(?P<body>(?!disso).+)$",
    r"^(?:tenho que|preciso)\s+(?:de\s+)?(?P<body>(?!um |uma ).+)$",
]


def task_create(text: str, folded: str, clock: Clock) -> Call | None:
    for pattern in TASK_CREATE:
        match = re.match(pattern, folded)
        if match:
            break
    else:
        return None
    if "mid" in match.groupdict() and re.search(r"\b(?:project|goal|note|reminder)\b", match.group("mid") or ""):
        return None
    day, day_span = find_date(folded, clock)
    at, at_span = find_time(folded)
    priority, priority_span = find_priority(folded)
    project_name, project_span = find_project(text)
    body_start = match.start("body")
    spans = [(max(span[0], body_start), span[1]) for span in (day_span, at_span, priority_span, project_span)
             if span and span[1] > body_start]
    # Cut what the title does not carry out of the original text (same offsets as the folded text unless
    # accents changed length, in which case the folded words are mapped back).
    if len(text) == len(folded):
        title = tidy(remove(text[:match.end("body")], [(0, body_start), *spans]))
    else:
        title = _original_words(text, tidy(remove(folded, [(0, body_start), *spans])), True)
    if not title:
        return None
    if day is None and at is not None:
        day = clock.today if clock.now is None or at > clock.now else clock.today + dt.timedelta(days=1)
    return Call("create_task", {"title": title, "priority": priority, "due_date": iso(day), "due_time": hhmm(at),
                                "project": project_name})


DONE_WORDS = (r"done|complete|completed|finished|hecha|hecho|terminada|terminado|completada|lista|listo|feita|feito|"
              r"concluida|concluido|pronta|pronto")


def _completed_fragment(folded: str) -> str | None:
    patterns = [
        rf"^(?:please\s+)?(?:mark|set|tick|check)\s+(?P<ref>.*?)\s*(?:as\s+)?(?:{DONE_WORDS})\b",
        r"^(?:please\s+)?(?:tick|check|cross)\s+off\s+(?P<ref>.+)$",
        r"^(?:i(?:'ve| have)? (?:just )?(?:finished|completed|did|done)|i'?m done with|done with|finished|completed)"
        r"\s+(?P<ref>.+)$",
        rf"^(?P<ref>.+?)\s+(?:is|are|it's|its)\s+(?:now\s+|all\s+)?(?:{DONE_WORDS})\b",
        rf"^(?:marca|marcar|marque|marcala|marcalo|marca-a)\s*(?P<ref>.*?)\s*(?:como\s+)?(?:{DONE_WORDS})\b",
        r"^(?:ya\s+)?(?:termine|acabe|he terminado|complete|hice)\s+(?P<ref>.+)$",
        r"^(?:ja\s+)?(?:terminei|acabei|conclui|fiz)\s+(?P<ref>.+)$",
        rf"^(?P<ref>.+?)\s+(?:esta|ya esta|ja esta|esta pronta|ficou)\s+(?:{DONE_WORDS})\b",
    ]
    for pattern in patterns:
        match = re.match(pattern, folded)
        if match:
            return match.group("ref")
    return None


def content_done(text: str, folded: str, clock: Clock) -> Call | None:
    published = re.match(r"^(?:i(?:'ve| have)? (?:just )?(?:published|posted|sent out)|publique|publiquei|ya publique|"
                         r"ja publiquei)\s+(?P<ref>.+)$", folded)
    published = published or re.match(r"^(?P<ref>.+?)\s+(?:is|was|has been|esta|foi|fue)\s+(?:published|posted|"
                                      r"publicad[oa]|enviad[oa])\b", folded)
    fragment = published.group("ref") if published else _completed_fragment(folded)
    if fragment is None or not (published or re.search(rf"\b(?:{CONTENT_NOUNS})s?\b", fragment)):
        return None
    return Call("complete_content_request", {"request": _original_words(text, reference(fragment))
                                             if reference(fragment) != "last" else "last"})


def task_complete(text: str, folded: str, clock: Clock) -> Call | None:
    fragment = _completed_fragment(folded)
    if fragment is None:
        return None
    ref = reference(fragment)
    return Call("complete_task", {"task": ref if ref == "last" or ref.isdigit() else _original_words(text, ref)})


UPDATE = re.compile(
    r"^(?:please\s+)?(?:make|set|change|move|push|postpone|reschedule|put|rename|update|bump|raise|lower|call)\s+"
    r"(?P<ref>.*?)(?=\s+(?:to|as|a|an|for|due|high|low|urgent|normal|into|in|on|by|until|and|priority)\b|$)"
    r"|^(?:ponla|ponlo|cambiala|cambialo|muevela|muevelo|hazla|hazlo|pasala|pasalo|dejala)\b(?P<es_ref>)"
    r"|^(?:pon|cambia|mueve|haz|pasa)\s+(?:la tarea\s+)?(?P<es_named>.+?)\s+(?:a|para|con|como|al)\b"
    r"|^(?:coloca|coloque|muda|mude|passa|passe|poe|ponha|deixa|deixe|torna|torne|move|mova|adia|adie)\b"
    r"(?:\s+(?:ela|isso|essa|a tarefa (?P<pt_named>.+?)(?=\s+(?:para|pra|como|com)\b)))?")


def task_update(text: str, folded: str, clock: Clock) -> Call | None:
    match = UPDATE.match(folded)
    if not match:
        return None
    fragment = match.group("ref") or match.group("es_named") or match.group("pt_named") or ""
    fragment = re.sub(r"^(?:the (?:priority|due date|deadline|time|title|name) of|the due time of)\s+", "", fragment)
    if re.search(rf"\b(?:{CONTENT_NOUNS}|summary|reminders?|project|goal|time ?zone)\b", fragment):
        return None
    arguments: dict[str, Any] = {"task": reference(fragment)}
    rename = re.search(r"\b(?:rename|call)\s+.*?\s+(?:to\s+|as\s+)?[\"“']?(?P<title>[^\"”]+?)[\"”']?$", folded)
    rename = rename or re.search(r"\bchange (?:the|its) (?:title|name) to\s+(?P<title>.+)$", folded)
    priority, _ = find_priority(folded)
    project_name, project_span = find_project(text)
    rest = remove(folded, [project_span] if project_span else [])
    day, _ = find_date(rest, clock)
    at, _ = find_time(rest)
    if re.search(r"\bmake it\s+(high|low|urgent|normal)\b", folded) and priority is None:
        priority = re.search(r"\bmake it\s+(high|low|urgent|normal)\b", folded).group(1)
    if rename:
        arguments["title"] = _original_words(text, tidy(rename.group("title")), True)
    arguments.update({"priority": priority, "due_date": iso(day), "due_time": hhmm(at), "project": project_name})
    if not any(arguments.get(key) for key in ("title", "priority", "due_date", "due_time", "project")):
        return None
    if arguments["task"] != "last" and not arguments["task"].isdigit():
        arguments["task"] = _original_words(text, arguments["task"])
    return Call("update_task", arguments)


PROJECT_CREATE = re.compile(
    r"^(?:please\s+)?(?:create|start|add|make|set up|open|new|begin)\s+(?:a\s+|an\s+)?(?:new\s+)?project\b"
    r"(?:\s*(?:called|named|for|:|-|–))?\s*(?P<body>.+)$"
    r"|^(?:crea|crear|nuevo|empieza|abre|inicia)\s+(?:un\s+)?(?:nuevo\s+)?proyecto\b(?:\s*(?:llamado|:|-|–|de|para))?"
    r"\s*(?P<es>.+)$"
    r"|^(?:cria|crie|criar|novo|comeca|abre|inicia)\s+(?:um\s+)?(?:novo\s+)?projeto\b(?:\s*(?:chamado|:|-|–|de|para))?"
    r"\s*(?P<pt>.+)$")


def project(text: str, folded: str, clock: Clock) -> Call | None:
    match = PROJECT_CREATE.match(folded)
    if not match:
        return None
    group = next(name for name in ("body", "es", "pt") if match.group(name) is not None)
    body = text[match.start(group):] if len(text) == len(folded) else _original_words(text, match.group(group))
    quoted = re.search(r"[\"“'](.+?)[\"”']", body)
    if quoted:
        name = quoted.group(1)
        rest = body[quoted.end():]
    else:
        parts = re.split(r"\s+(?:to|about|for|so that|para|sobre|con el fin de|com o objetivo de)\s+|\s*[,:;–-]\s+",
                         body, maxsplit=1)
        name, rest = parts[0], parts[1] if len(parts) > 1 else ""
    description = tidy(re.sub(r"^\s*(?:to|about|for|para|sobre)\s+", "", rest)) or None
    return Call("create_project", {"name": tidy(name), "description": description})


GOAL = re.compile(
    r"^(?:please\s+)?(?:new goal|set (?:a|my) goal|add (?:a )?goal|create (?:a )?goal|my goal is|goal)"
    r"(?:\s*(?:to|:|-|–|is))?\s*(?P<body>.+)$"
    r"|^(?:nuevo objetivo|nueva meta|mi objetivo es|mi meta es|objetivo|crea un objetivo|crea una meta)"
    r"(?:\s*(?::|-|–|de))?\s*(?P<es>.+)$"
    r"|^(?:nova meta|novo objetivo|minha meta e|meu objetivo e|meta|cria uma meta|crie uma meta)"
    r"(?:\s*(?::|-|–|de))?\s*(?P<pt>.+)$")


def goal(text: str, folded: str, clock: Clock) -> Call | None:
    match = GOAL.match(folded)
    if not match:
        return None
    group = next(name for name in ("body", "es", "pt") if match.group(name) is not None)
    day, day_span = find_date(folded, clock)
    project_name, project_span = find_project(text)
    spans = [span for span in (day_span, project_span) if span and span[0] >= match.start(group)]
    words = remove(folded, [(0, match.start(group)), *spans])
    title = _original_words(text, tidy(words), True)
    if not title:
        return None
    return Call("create_goal", {"title": title, "target_date": iso(day), "project": project_name})


SEARCH = re.compile(
    r"^(?:please\s+)?(?:find|search|look up|look for|show(?: me)?|get|pull up)\s+(?:for\s+)?(?:all\s+)?"
    r"(?:my\s+|the\s+)?notes?\s+(?:about|on|for|with|mentioning|containing|that mention|regarding)\s+(?P<q>.+)$"
    r"|^(?:search|look through)\s+(?:my\s+)?notes\s+for\s+(?P<q2>.+)$"
    r"|^what did i (?:note|write down|save|jot down)\s+(?:about|on)\s+(?P<q3>.+)$"
    r"|^(?:busca|buscar|encuentra|muestrame|ensename)\s+(?:mis\s+|las\s+)?notas\s+(?:sobre|de|con|acerca de)\s+"
    r"(?P<es>.+)$"
    r"|^(?:procura|procure|busca|busque|encontra|encontre|mostra|mostre|me mostra)\s+(?:as\s+)?(?:minhas\s+)?notas\s+"
    r"(?:sobre|de|com)\s+(?P<pt>.+)$")


def notes_search(text: str, folded: str, clock: Clock) -> Call | None:
    match = SEARCH.match(folded)
    if not match:
        return None
    query = next(value for value in match.groups() if value)
    return Call("search_notes", {"query": _original_words(text, tidy(query)).rstrip("?") or tidy(query)})


CONTENT_ASK = re.compile(
    r"\b(?:write|draft|compose|prepare|create|make|craft|put together|need|want|do|give me)\b"
    r"|\b(?:escribe|escribeme|escribir|redacta|redactame|prepara|preparame|necesito|quiero|hazme|crea|creame)\b"
    r"|\b(?:escreve|escreva|escrever|redige|redija|prepara|prepare|preciso|quero|faz|faca|cria|crie)\b")
CONTENT_KIND = re.compile(r"\b(?:post|article|blog|caption|tweet|thread|newsletter|e-?mail|publicacion|publicacao|"
                          r"articulo|artigo|legenda|correo|boletin|entrada de blog|copy)\b")
PLATFORMS = [
    ("linkedin", r"\blinked ?in\b"),
    ("instagram", r"\binstagram\b|\binsta\b|\big\b"),
    ("x", r"\btweet\b|\btwitter\b|\btuit\b|\bon x\b|\bfor x\b|\bx post\b|\bx thread\b|\bpara x\b|\bno x\b"
          r"|\bpara o x\b"),
    ("facebook", r"\bfacebook\b|\bfb\b"),
    ("blog", r"\bblog\b|\barticle\b|\barticulo\b|\bartigo\b"),
    ("email", r"\be-?mail\b|\bnewsletter\b|\bcorreo\b|\bboletin\b"),
]
LENGTHS = [
    ("short", r"\bshort\b|\bbrief\b|\bquick\b|\bconcise\b|\bcort[oa]\b|\bbreve\b|\bcurt[oa]\b"),
    ("long", r"\blong(?:-form)?\b|\bdetailed\b|\bin-depth\b|\blarg[oa]\b|\blong[oa]\b|\bextens[oa]\b"),
    ("medium", r"\bmedium(?:-length| length)?\b|\bmedian[oa]\b|\bmedi[oa]\b"),
]
TONES = [
    ("professional", r"\bprofessional\b|\bformal\b|\bprofesional\b|\bprofissional\b|\bserious\b"),
    ("friendly", r"\bfriendly\b|\bcasual\b|\bwarm\b|\bamigable\b|\bcercan[oa]\b|\bamigavel\b|\bdescontraid[oa]\b"),
    ("playful", r"\bplayful\b|\bfun\b|\bfunny\b|\bhumorous\b|\bdivertid[oa]\b|\bbem-humorad[oa]\b|\bwitty\b"),
    ("inspiring", r"\binspiring\b|\binspirational\b|\bmotivational\b|\binspirador[a]?\b|\bmotivador[a]?\b"),
]


def _first(rules: list[tuple[str, str]], folded: str) -> tuple[str | None, tuple[int, int] | None]:
    found = [(re.search(pattern, folded), value) for value, pattern in rules]
    found = [(match, value) for match, value in found if match]
    if not found:
        return None, None
    match, value = min(found, key=lambda item: item[0].start())
    return value, match.span()


def content_request(text: str, folded: str, clock: Clock) -> Call | None:
    kind = CONTENT_KIND.search(folded)
    if not kind or not CONTENT_ASK.search(folded[:kind.start()]):
        return None
    platform, _ = _first(PLATFORMS, folded)
    length, _ = _first(LENGTHS, folded)
    tone, _ = _first(TONES, folded)
    topic = None
    about = re.search(r"\b(?:about|regarding|announcing|on the topic of|sobre|acerca de|acerca del)\s+(?P<t>.+)$",
                      folded)
    if about is None:
        about = re.search(r"\bon\s+(?!linkedin|instagram|facebook|x\b|twitter|the blog|our blog|my blog)(?P<t>.+)$",
                          folded)
    if about:
        words = re.split(r"\s*[,.;!?]\s*|\s+(?:in|with|using|en|con|com|num|numa|em)\s+(?:a|an|un|una|um|uma)?\s*"
                         r"(?:\w+\s+)?(?:tone|tono|tom)\b|\s+(?:for|para|on|no|en)\s+(?:linkedin|instagram|facebook|"
                         r"x|twitter|the blog|our blog|o blog|el blog)\b|\s+(?:keep it|make it|que sea|que seja)\b",
                         about.group("t"), maxsplit=1)[0]
        words = re.sub(r"\s+(?:short|long|medium|professional|friendly|playful|inspiring|corto|largo|curto|longo)$",
                       "", words)
        topic = _original_words(text, tidy(words, False)) or None
    return Call("create_content_request", {"brief": text.strip(), "platform": platform, "length": length,
                                           "tone": tone, "topic": topic})


def _period(folded: str) -> str | None:
    if re.search(r"\boverdue\b|\blate\b|\bpast due\b|\bvencidas?\b|\batrasad[oa]s?\b|\bretrasad[oa]s?\b", folded):
        return "overdue"
    if re.search(r"\bthis week\b|\besta semana\b|\bnesta semana\b|\bthe week\b|\bda semana\b|\bde la semana\b",
                 folded):
        return "this_week"
    if re.search(r"\btomorrow\b|(?<!la )\bmanana\b|\bamanha\b", folded):
        return "tomorrow"
    if re.search(r"\btoday\b|\btonight\b|\bhoy\b|\bhoje\b", folded):
        return "today"
    if re.search(r"\ball (?:my )?(?:tasks|to-?dos)\b|\btodas (?:mis |as minhas |as )?(?:tareas|tarefas)\b", folded):
        return "all"
    return None


ASKING = re.compile(r"^(?:what|which|show|list|give|tell|any|anything|do i|what's|whats|how many|get|read|send|"
                    r"cuales|que|muestrame|muestra|lista|dime|tengo|hay|quais|qual|o que|mostra|mostre|me mostra|"
                    r"me diz|tenho|ha\b)|\?$")


def due_report(text: str, folded: str, clock: Clock) -> Call | None:
    if re.search(r"\b(?:tasks?|to-?dos?|tareas?|tarefas?)\b", folded):
        return None
    due = re.search(r"\bdue\b|\bvence[n]?\b|\bvencem\b|\bon my plate\b|\bpendiente[s]? para\b|\bpara entregar\b"
                    r"|\bwhat do i have\b|\bque tengo (?:para|que hacer)\b|\bo que (?:eu )?tenho (?:para|que fazer)\b"
                    r"|\bmy day\b|\bmi dia\b|\bmeu dia\b|\bagenda\b", folded)
    if not due or not ASKING.search(folded):
        return None
    period = _period(folded)
    return Call("report_due", {"period": period if period in ("today", "tomorrow", "this_week") else "today"})


def tasks_list(text: str, folded: str, clock: Clock) -> Call | None:
    if re.search(r"\b(?:overdue|late|past due|vencidas?|atrasad[oa]s?)\b", folded) and ASKING.search(folded):
        return Call("list_tasks", {"period": "overdue", "priority": None, "project": None, "include_done": False})
    if not re.search(r"\b(?:tasks?|to-?dos?|to-?do list|tareas?|tarefas?|pendientes|pendencias)\b", folded):
        return None
    if not ASKING.search(folded) and not re.search(r"\bmy (?:tasks|to-?dos)\b|\bmis tareas\b|\bminhas tarefas\b",
                                                   folded):
        return None
    priority, _ = find_priority(folded)
    if priority is None:
        short = re.search(r"\b(high|urgent|low)\b", folded)
        priority = short.group(1) if short else None
    project_name, _ = find_project(text)
    include_done = bool(re.search(r"\b(?:including|include|with|incluyendo|incluidas|incluindo|com)\s+(?:the\s+|las\s+"
                                  r"|as\s+)?(?:done|completed|finished|hechas|terminadas|feitas|concluidas)\b"
                                  r"|\b(?:done|completed|finished) (?:ones|tasks) too\b", folded))
    return Call("list_tasks", {"period": _period(folded), "priority": priority, "project": project_name,
                               "include_done": include_done})
