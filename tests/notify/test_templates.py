"""Every message kind renders in natural Vietnamese: unaccented one-segment SMS, UTF-8 e-mail."""
import pytest

from notify.domain.formatting import vn_date, vnd
from notify.domain.model import MESSAGE_KINDS, kind_for_dossier_status
from notify.domain.sms_text import segment_count, sms_length, unaccent
from notify.rendering import TemplateParamsError, render_email, render_sms

LONG_NAME = ("Cấp Phiếu lý lịch tư pháp số 2 cho công dân Việt Nam, người nước ngoài đang cư trú "
             "tại Việt Nam theo yêu cầu của cơ quan tiến hành tố tụng")
PARAMS = {
    "dossier_code": "STP-HN-261125-AB7KQ9",
    "procedure_name": "Cấp Phiếu lý lịch tư pháp",
    "full_name": "Nguyễn Thị Đào",
    "due_at": "2026-12-04T17:30:00+00:00",  # 05/12/2026 00:30 in Vietnam
    "fee_amount": 200000,
    "amount": 200000,
    "txn_ref": "P2611250001AB",
    "gateway_txn_no": "14012345",
    "paid_at": "2026-11-25T09:15:00+07:00",
    "note": "Thiếu bản sao Căn cước công dân",
}


def test_only_the_contract_statuses_send_messages():
    assert kind_for_dossier_status("submitted") is None
    assert kind_for_dossier_status("processing") is None
    for status in ("accepted", "not_accepted", "payment_requested", "supplement_requested", "processed",
                   "returned", "stopped", "withdrawn"):
        assert kind_for_dossier_status(status) == status


def test_amounts_and_dates_are_written_the_vietnamese_way():
    assert vnd(200000) == "200.000"
    assert vnd(1350000) == "1.350.000"
    assert vnd(0) == "0"
    assert vn_date("2026-12-04T17:30:00+00:00") == "05/12/2026"


def test_unaccent_maps_d_stroke_by_hand_and_leaves_ascii():
    assert unaccent("Đăng ký khai sinh đúng hạn") == "Dang ky khai sinh dung han"
    assert unaccent("Hồ sơ đã được tiếp nhận: 200.000 đ") == "Ho so da duoc tiep nhan: 200.000 d"
    assert unaccent("Nguyễn Thị Ánh «Tuyết»").isascii()


def test_segments_gsm7_and_ucs2():
    assert segment_count("a" * 160) == 1
    assert segment_count("a" * 161) == 2
    assert segment_count("a" * 306) == 2
    assert segment_count("a" * 307) == 3
    assert sms_length("[x]") == 5  # extension characters take two septets
    assert segment_count("ệ" * 70) == 1
    assert segment_count("ệ" * 71) == 2
    assert segment_count("ệ" * 135) == 3


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
@pytest.mark.parametrize("procedure_name", [PARAMS["procedure_name"], LONG_NAME])
def test_sms_is_unaccented_names_the_dossier_and_fits_one_segment(kind, procedure_name):
    sms = render_sms(kind, {**PARAMS, "procedure_name": procedure_name})
    assert sms.text.isascii()
    assert PARAMS["dossier_code"] in sms.text
    assert sms.segments == 1 == segment_count(sms.text)
    assert len(sms.text) <= 160
    assert "  " not in sms.text and "\n" not in sms.text


def test_sms_keeps_a_short_procedure_name_whole_and_shortens_a_long_one():
    assert "(Cap Phieu ly lich tu phap)" in render_sms("processed", PARAMS).text
    shortened = render_sms("processed", {**PARAMS, "procedure_name": LONG_NAME}).text
    assert "(Cap Phieu ly lich tu phap so 2" in shortened and "...)" in shortened


def test_sms_texts_say_what_happened_and_what_to_do():
    texts = {kind: render_sms(kind, PARAMS).text for kind in MESSAGE_KINDS}
    assert texts["accepted"] == (
        "DVC: Ho so STP-HN-261125-AB7KQ9 (Cap Phieu ly lich tu phap) da duoc tiep nhan. "
        "Ngay hen tra ket qua: 05/12/2026. Theo doi tien do tren Cong Dich vu cong."
    )
    assert "200.000 d." in texts["payment_requested"] and "thanh toan truc tuyen" in texts["payment_requested"]
    assert "Thieu ban sao Can cuoc cong dan" in texts["supplement_requested"]
    assert "Ly do: Thieu ban sao" in texts["not_accepted"]
    assert "Da nhan 200.000 d" in texts["payment_succeeded"] and "P2611250001AB" in texts["payment_succeeded"]
    assert "Da hoan tra 200.000 d" in texts["payment_refunded"]
    assert "dung xu ly" in texts["stopped"] and "hoan tra" in texts["stopped"]
    assert "rut" in texts["withdrawn"]
    assert "tra ket qua" in texts["returned"]
    assert "xu ly xong" in texts["processed"]


def test_a_very_long_reason_still_fits_one_segment():
    sms = render_sms("supplement_requested", {**PARAMS, "procedure_name": LONG_NAME, "note": "Bổ sung " * 40})
    assert sms.segments == 1


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_email_has_subject_with_code_text_and_html_with_diacritics(kind):
    email = render_email(kind, PARAMS)
    assert PARAMS["dossier_code"] in email.subject and email.subject.startswith("[Dịch vụ công]")
    assert "\n" not in email.subject
    assert email.text.startswith("Kính gửi Ông/Bà Nguyễn Thị Đào,")
    assert PARAMS["dossier_code"] in email.text and PARAMS["dossier_code"] in email.html
    assert "Cấp Phiếu lý lịch tư pháp" in email.text
    assert "\n\n\n" not in email.text
    assert email.html.startswith("<!DOCTYPE html>") and '<html lang="vi">' in email.html


def test_email_amounts_dates_and_next_steps():
    assert "200.000 đ" in render_email("payment_requested", PARAMS).text
    assert "thanh toán trực tuyến" in render_email("payment_requested", PARAMS).text
    accepted = render_email("accepted", PARAMS).text
    assert "Ngày hẹn trả kết quả: 05/12/2026" in accepted
    receipt = render_email("payment_succeeded", PARAMS)
    assert "Số tiền: 200.000 đ" in receipt.text and "09:15 25/11/2026" in receipt.text
    assert "biên nhận" in receipt.text


def test_html_escapes_parameters():
    email = render_email("not_accepted", {**PARAMS, "note": "<script>x</script>"})
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "<script>x</script>" in email.text


def test_missing_dossier_code_is_refused():
    with pytest.raises(TemplateParamsError) as error:
        render_sms("accepted", {"procedure_name": "x"})
    assert "dossier_code" in error.value.fields


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_a_missing_optional_parameter_is_left_out_never_written_as_none(kind):
    params = {"dossier_code": "X-1", "fee_amount": 200000, "amount": 200000}
    sms = render_sms(kind, params).text
    email = render_email(kind, params)
    for text in (sms, email.subject, email.text, email.html):
        assert "None" not in text and "()" not in text and "«»" not in text
    assert "X-1" in sms and sms.isascii()


def test_a_reason_that_ends_its_own_sentence_gets_no_second_full_stop():
    for kind in ("not_accepted", "stopped", "supplement_requested"):
        text = render_sms(kind, {**PARAMS, "note": "Thiếu bản sao Căn cước công dân."}).text
        assert "cong dan. " in text and "cong dan.." not in text


def test_a_backtick_in_a_reason_keeps_the_sms_gsm7_and_whole():
    sms = render_sms("not_accepted", {**PARAMS, "note": "Sai mục `Nơi cư trú`"})
    assert sms.text.isascii() and "`" not in sms.text
    assert "(Cap Phieu ly lich tu phap)" in sms.text and "Ly do: Sai muc 'Noi cu tru'." in sms.text


def test_amount_templates_require_their_amount():
    from notify.rendering import missing_params

    assert missing_params("payment_requested", {"dossier_code": "X"}) == ["fee_amount"]
    assert missing_params("payment_succeeded", {"dossier_code": "X"}) == ["amount"]
    assert missing_params("payment_refunded", {"dossier_code": "X", "amount": 0}) == []
    assert missing_params("processed", {"dossier_code": "X"}) == []
