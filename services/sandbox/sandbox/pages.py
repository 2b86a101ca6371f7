"""Minimal HTML for the pay pages and the outbox (no template engine, everything escaped)."""
from html import escape

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{font-size:1.4rem} table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top} .amount{font-size:2rem;font-weight:bold;color:#005baa}
button{font-size:1.1rem;padding:.5rem 1.5rem;margin-right:1rem} .pay{background:#005baa;color:#fff;border:0}
.cancel{background:#eee;border:1px solid #999} .note{color:#777;font-size:.9rem} pre{white-space:pre-wrap;margin:0}
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;background:#eef;font-size:.8rem}
"""


def page(title, body, refresh=None):
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (f'<!doctype html><html lang="vi"><head><meta charset="utf-8">{meta}<title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def vnd(amount):
    """200000 → '200.000 ₫' as Vietnamese write it."""
    return f"{int(amount):,}".replace(",", ".") + " ₫"


def pay_page(brand, action, amount, rows):
    details = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    body = (
        f"<h1>{escape(brand)} — cổng thanh toán thử nghiệm (sandbox)</h1>"
        f'<p class="amount">{vnd(amount)}</p><table>{details}</table><p></p>'
        f'<form method="post" action="{escape(action)}">'
        '<button class="pay" type="submit" name="action" value="pay">Thanh toán</button>'
        '<button class="cancel" type="submit" name="action" value="cancel">Hủy</button></form>'
        '<p class="note">Môi trường thử nghiệm: không có tiền thật nào được chuyển.</p>'
    )
    return page(f"{brand} sandbox", body)


def error_page(brand, message):
    return page(f"{brand} sandbox", f"<h1>{escape(brand)} sandbox</h1><p>{escape(message)}</p>")


def national_portal_section(state):
    """The national portal's view of each dossier: its record's status and the progress received."""
    if state is None:
        return ""
    rows = []
    for code, record in sorted(state["dossiers"].items(), key=lambda item: item[0], reverse=True)[:200]:
        steps = " → ".join(entry.get("TrangThai", "?") for entry in state["progress"].get(code, []))
        fees = ", ".join(vnd(fee.get("Gia", 0)) for fee in record.get("DanhSachLePhi") or [])
        rows.append(
            f"<tr><td>{escape(code)}</td><td>{escape(str(record.get('MaTTHC', '')))}</td>"
            f"<td>{escape(str(record.get('TrangThaiHoSo', '')))}</td><td>{escape(steps)}</td>"
            f"<td>{escape(fees)}</td></tr>"
        )
    table = "".join(rows) or '<tr><td colspan="5">Chưa có hồ sơ nào được đồng bộ.</td></tr>'
    return (
        "<h1>Cổng DVC quốc gia (giả lập): hồ sơ đã đồng bộ</h1>"
        f'<p class="note">{state["logins"]} lần đăng nhập, {len(state["calls"])} lần gọi, '
        f'{len(state["rejected"])} lần từ chối. JSON: <a href="/national-portal.json">/national-portal.json</a></p>'
        "<table><tr><th>Mã hồ sơ</th><th>MaTTHC</th><th>Trạng thái</th><th>Tiến độ (TrangThai)</th>"
        f"<th>Lệ phí</th></tr>{table}</table>"
    )


def outbox_page(messages, national_portal=None):
    rows = []
    for message in messages:
        if message["channel"] == "email":
            content = f"<b>{escape(message['subject'] or '')}</b><pre>{escape(message['text'] or '')}</pre>"
        else:
            content = f"<pre>{escape(message['text'] or '')}</pre>"
        rows.append(
            f"<tr><td>{escape(message['at'][:19].replace('T', ' '))}</td>"
            f"<td><span class=badge>{escape(message['channel'])}</span> {escape(message['provider'])}</td>"
            f"<td>{escape(message['to'])}</td><td>{content}</td></tr>"
        )
    table = "".join(rows) or '<tr><td colspan="4">Chưa có tin nhắn nào.</td></tr>'
    body = (
        "<h1>Hộp thư sandbox: tin nhắn SMS và e-mail công dân đã nhận</h1>"
        '<p class="note">Mới nhất ở trên; tự làm mới mỗi 5 giây. JSON: <a href="/outbox.json">/outbox.json</a>, '
        'giao dịch: <a href="/payments.json">/payments.json</a></p>'
        f"<table><tr><th>Lúc</th><th>Kênh</th><th>Người nhận</th><th>Nội dung</th></tr>{table}</table>"
        + national_portal_section(national_portal)
    )
    return page("Sandbox outbox", body, refresh=5)
