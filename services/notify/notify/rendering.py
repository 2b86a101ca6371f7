"""Message rendering from the Jinja2 templates shipped in ``notify/templates``.

Each message kind has ``sms/<kind>.txt`` and ``email/<kind>.subject.txt``,
``email/<kind>.txt``, ``email/<kind>.html``; offices change wording there,
not in code. SMS templates are written with diacritics and sent unaccented.
"""
import re
from dataclasses import dataclass

import jinja2

from notify.domain.formatting import vn_date, vn_datetime, vnd
from notify.domain.model import MESSAGE_KINDS
from notify.domain.sms_text import segment_count, single_segment_limit, sms_length, unaccent

# every parameter a template may use; missing ones render as empty
PARAMS = (
    "dossier_code", "procedure_name", "full_name", "due_at", "fee_amount", "note",
    "amount", "txn_ref", "gateway", "gateway_txn_no", "paid_at", "new_status", "status_code",
)
REQUIRED = {"dossier_code"}
# a message that states an amount cannot be sent without it (an RPC caller must give it)
KIND_REQUIRED = {"payment_requested": ("fee_amount",), "payment_succeeded": ("amount",),
                 "payment_refunded": ("amount",)}
ELLIPSIS = "..."


class TemplateParamsError(ValueError):
    """Parameters a template cannot be rendered with; ``fields`` names them."""

    def __init__(self, fields):
        self.fields = fields
        super().__init__(str(fields))


@dataclass(frozen=True)
class RenderedSms:
    text: str
    segments: int


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _environment():
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("notify", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        finalize=_blank_none,  # a missing optional value is left out, never written "None"
        # the templates ship with the code: no stat() of every file a template uses on every render
        auto_reload=False,
    )
    env.filters.update(vnd=vnd, vn_date=vn_date, vn_datetime=vn_datetime, end_sentence=end_sentence)
    return env


def _blank_none(value):
    return "" if value is None else value


def end_sentence(text):
    """``text`` ending with one full stop: a reason that already ends its sentence gets no second one."""
    text = str(text or "").rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def missing_params(kind, params):
    """The parameters ``kind`` needs to say anything useful that ``params`` lacks (amounts)."""
    return [name for name in KIND_REQUIRED.get(kind, ()) if (params or {}).get(name) in (None, "")]


_env = None


def environment():
    global _env
    if _env is None:
        _env = _environment()
    return _env


def _context(params):
    missing = sorted(name for name in REQUIRED if not params.get(name))
    if missing:
        raise TemplateParamsError({name: ["required"] for name in missing})
    context = {name: params.get(name) for name in PARAMS}
    for key, value in params.items():
        context.setdefault(key, value)
    return context


def _render(name, context):
    try:
        return environment().get_template(name).render(**context)
    except (ValueError, TypeError, jinja2.UndefinedError) as exc:
        raise TemplateParamsError({"params": [str(exc)]}) from None


def _tidy(text):
    text = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def render_sms(kind, params):
    """Unaccented one-line SMS text; a long procedure name is shortened so the text fits one segment."""
    context = _context(params)
    text = _sms(kind, context)
    limit = single_segment_limit(text)
    name = unaccent(context.get("procedure_name") or "")
    if sms_length(text) > limit and name:
        overflow = sms_length(text) - limit
        keep = max(0, len(name) - overflow - len(ELLIPSIS))
        context["procedure_name"] = name[:keep].rstrip(" ,.-") + ELLIPSIS if keep else ""
        text = _sms(kind, context)
        if not context["procedure_name"]:
            text = text.replace(" ()", "")
    note = unaccent(context.get("note") or "")
    if sms_length(text) > limit and note:
        # a very long reason: the SMS says where to read it in full
        keep = max(0, len(note) - (sms_length(text) - limit) - len(ELLIPSIS))
        context["note"] = note[:keep].rstrip(" ,.-") + ELLIPSIS
        text = _sms(kind, context)
        if not context["procedure_name"]:
            text = text.replace(" ()", "")
    return RenderedSms(text=text, segments=segment_count(text))


def _sms(kind, context):
    text = _render(f"sms/{kind}.txt", context)
    return re.sub(r"\s+", " ", unaccent(text)).strip()


def render_email(kind, params):
    """Subject, plain text and HTML of an e-mail, UTF-8 with diacritics."""
    context = _context(params)
    subject = re.sub(r"\s+", " ", _render(f"email/{kind}.subject.txt", context)).strip()
    context["subject"] = subject
    return RenderedEmail(
        subject=subject,
        text=_tidy(_render(f"email/{kind}.txt", context)),
        html=_render(f"email/{kind}.html", context).strip() + "\n",
    )


def known_kind(kind):
    return kind in MESSAGE_KINDS
