"""Vietnamese SMS text: unaccented ASCII and GSM-7 / UCS-2 segment counting."""
import unicodedata

from unidecode import unidecode

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def unaccent(text):
    """Vietnamese without diacritics, ASCII only: đ/Đ by hand (they do not decompose), then NFD, then unidecode."""
    text = text.replace("đ", "d").replace("Đ", "D")
    text = unicodedata.normalize("NFD", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
    text = unidecode(unicodedata.normalize("NFC", text))
    # "`" is the one printable ASCII character outside GSM-7: it would turn the SMS into UCS-2
    text = text.replace("`", "'")
    return "".join(ch for ch in text if 32 <= ord(ch) < 127 or ch == "\n")


def is_gsm7(text):
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def sms_length(text):
    """Length in encoding units: GSM-7 septets (extension characters count twice) or UCS-2 code units."""
    if is_gsm7(text):
        return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
    return len(text.encode("utf-16-le")) // 2


def segment_count(text):
    """Number of SMS parts the text needs (GSM-7: 160 / 153 per part, UCS-2: 70 / 67)."""
    single, part = (GSM7_SINGLE, GSM7_PART) if is_gsm7(text) else (UCS2_SINGLE, UCS2_PART)
    length = sms_length(text)
    if length <= single:
        return 1
    return -(-length // part)


def single_segment_limit(text):
    return GSM7_SINGLE if is_gsm7(text) else UCS2_SINGLE
