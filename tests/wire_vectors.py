"""Known wire-format vectors, written by hand from docs/protocols.md.

Each signed text below is spelled out literally, as the protocol describes
it; a test computes the expected digest with hashlib/hmac and checks one side
against it: the services' adapters (tests/payment, tests/notify,
tests/portal_sync) and the sandbox's fakes (tests/sandbox) separately, so a
signing bug on one side is never mirrored on the other.
"""
import hashlib
import hmac


def hmac_sha512(secret, text):
    return hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()


def hmac_sha256(secret, text):
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


# --- VNPay 2.1.0 --------------------------------------------------------------------------------------------
VNPAY_TMN = "VECTOR01"
VNPAY_SECRET = "VECTORVNPAYSECRET0123456789ABCDE"

# A pay URL's parameters: a space, "~", "*", "&", "/" and a Vietnamese letter to encode; an empty bank code.
VNPAY_PAY_PARAMS = {
    "vnp_Version": "2.1.0", "vnp_Command": "pay", "vnp_TmnCode": VNPAY_TMN, "vnp_Amount": "20000000",
    "vnp_CurrCode": "VND", "vnp_TxnRef": "P261126003005VECTOR", "vnp_OrderInfo": "Le phí ho so X-1",
    "vnp_OrderType": "other", "vnp_Locale": "vn", "vnp_ReturnUrl": "https://portal.example/~a/b*c?x=1&y=a b",
    "vnp_IpAddr": "203.0.113.9", "vnp_CreateDate": "20261126003005", "vnp_ExpireDate": "20261126004505",
    "vnp_BankCode": "",
}
# Sorted by key, form-encoded (space → "+", "~" → "%7E", "*" kept, í = UTF-8 C3 AD), the empty value left out.
VNPAY_PAY_TEXT = (
    "vnp_Amount=20000000&vnp_Command=pay&vnp_CreateDate=20261126003005&vnp_CurrCode=VND"
    "&vnp_ExpireDate=20261126004505&vnp_IpAddr=203.0.113.9&vnp_Locale=vn&vnp_OrderInfo=Le+ph%C3%AD+ho+so+X-1"
    "&vnp_OrderType=other&vnp_ReturnUrl=https%3A%2F%2Fportal.example%2F%7Ea%2Fb*c%3Fx%3D1%26y%3Da+b"
    "&vnp_TmnCode=VECTOR01&vnp_TxnRef=P261126003005VECTOR&vnp_Version=2.1.0"
)

VNPAY_QUERY = {
    "vnp_RequestId": "a1b2c3", "vnp_Version": "2.1.0", "vnp_Command": "querydr", "vnp_TmnCode": VNPAY_TMN,
    "vnp_TxnRef": "P261126003005VECTOR", "vnp_OrderInfo": "Truy van giao dich",
    "vnp_TransactionDate": "20261126003005", "vnp_CreateDate": "20261126010000", "vnp_IpAddr": "127.0.0.1",
}
VNPAY_QUERY_TEXT = ("a1b2c3|2.1.0|querydr|VECTOR01|P261126003005VECTOR|20261126003005|20261126010000|127.0.0.1"
                    "|Truy van giao dich")

VNPAY_REFUND = {
    "vnp_RequestId": "d4e5f6", "vnp_Version": "2.1.0", "vnp_Command": "refund", "vnp_TmnCode": VNPAY_TMN,
    "vnp_TransactionType": "02", "vnp_TxnRef": "P261126003005VECTOR", "vnp_Amount": "20000000",
    "vnp_TransactionNo": "14123456", "vnp_TransactionDate": "20261126003005", "vnp_CreateBy": "payment-service",
    "vnp_CreateDate": "20261127090000", "vnp_IpAddr": "127.0.0.1", "vnp_OrderInfo": "Hoan tien",
}
VNPAY_REFUND_TEXT = ("d4e5f6|2.1.0|refund|VECTOR01|02|P261126003005VECTOR|20000000|14123456|20261126003005"
                     "|payment-service|20261127090000|127.0.0.1|Hoan tien")

# querydr's answer: PromotionCode and PromotionAmount absent, so empty between the pipes.
VNPAY_QUERY_ANSWER = {
    "vnp_ResponseId": "r9", "vnp_Command": "querydr", "vnp_ResponseCode": "00", "vnp_Message": "Query success",
    "vnp_TmnCode": VNPAY_TMN, "vnp_TxnRef": "P261126003005VECTOR", "vnp_Amount": "20000000", "vnp_BankCode": "NCB",
    "vnp_PayDate": "20261126003500", "vnp_TransactionNo": "14123456", "vnp_TransactionType": "01",
    "vnp_TransactionStatus": "00", "vnp_OrderInfo": "Le phi",
}
VNPAY_QUERY_ANSWER_TEXT = ("r9|querydr|00|Query success|VECTOR01|P261126003005VECTOR|20000000|NCB|20261126003500"
                           "|14123456|01|00|Le phi||")
VNPAY_REFUND_ANSWER = {**VNPAY_QUERY_ANSWER, "vnp_Command": "refund", "vnp_Message": "Refund success",
                       "vnp_TransactionType": "02"}
VNPAY_REFUND_ANSWER_TEXT = ("r9|refund|00|Refund success|VECTOR01|P261126003005VECTOR|20000000|NCB|20261126003500"
                            "|14123456|02|00|Le phi")

# --- MoMo v2 ------------------------------------------------------------------------------------------------
MOMO_PARTNER, MOMO_ACCESS, MOMO_SECRET = "MOMOVECTOR", "vectoraccesskey", "vectormomosecret0123456789abcdef"

MOMO_CREATE = {
    "partnerCode": MOMO_PARTNER, "requestId": "P1", "amount": 150000, "orderId": "P1", "orderInfo": "Le phi ho so",
    "redirectUrl": "https://portal.example/return?a=1", "ipnUrl": "https://pay.example/callbacks/momo/ipn",
    "requestType": "captureWallet", "extraData": "", "lang": "vi",
}
MOMO_CREATE_TEXT = ("accessKey=vectoraccesskey&amount=150000&extraData=&ipnUrl=https://pay.example/callbacks/momo/ipn"
                    "&orderId=P1&orderInfo=Le phi ho so&partnerCode=MOMOVECTOR"
                    "&redirectUrl=https://portal.example/return?a=1&requestId=P1&requestType=captureWallet")

MOMO_IPN = {
    "partnerCode": MOMO_PARTNER, "orderId": "P1", "requestId": "P1", "amount": 150000, "orderInfo": "Le phi ho so",
    "orderType": "momo_wallet", "transId": 4012345678, "resultCode": 0, "message": "Thành công.", "payType": "qr",
    "responseTime": 1764100000000, "extraData": "",
}
MOMO_IPN_TEXT = ("accessKey=vectoraccesskey&amount=150000&extraData=&message=Thành công.&orderId=P1"
                 "&orderInfo=Le phi ho so&orderType=momo_wallet&partnerCode=MOMOVECTOR&payType=qr&requestId=P1"
                 "&responseTime=1764100000000&resultCode=0&transId=4012345678")

MOMO_QUERY = {"partnerCode": MOMO_PARTNER, "requestId": "q1", "orderId": "P1", "lang": "vi"}
MOMO_QUERY_TEXT = "accessKey=vectoraccesskey&orderId=P1&partnerCode=MOMOVECTOR&requestId=q1"

MOMO_REFUND = {"partnerCode": MOMO_PARTNER, "orderId": "P1R1", "requestId": "f1", "amount": 150000,
               "transId": 4012345678, "lang": "vi", "description": "Hoan phi"}
MOMO_REFUND_TEXT = ("accessKey=vectoraccesskey&amount=150000&description=Hoan phi&orderId=P1R1&partnerCode=MOMOVECTOR"
                    "&requestId=f1&transId=4012345678")

# --- eSMS, SpeedSMS -----------------------------------------------------------------------------------------
ESMS_PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
ESMS_SEND = {
    "ApiKey": "vector-key", "SecretKey": "vector-secret", "Phone": "84912345678", "Content": "Ho so X-1 da xong",
    "Brandname": "DICHVUCONG", "SmsType": "2", "IsUnicode": "0", "Sandbox": "0", "RequestId": "n-1",
    "CallbackUrl": "https://notify.example/callbacks/esms",
}
SPEEDSMS_PATH = "/index.php/sms/send"
SPEEDSMS_TOKEN = "vector-token"
SPEEDSMS_AUTHORIZATION = "Basic dmVjdG9yLXRva2VuOng="  # base64 of "vector-token:x"
SPEEDSMS_SEND = {"to": ["84912345678"], "content": "Ho so X-1 da xong", "sms_type": 3, "sender": "DICHVUCONG"}

# --- national portal (LGSP adapter) -------------------------------------------------------------------------
PORTAL_LOGIN = {"username": "vector-user", "password": "vector-password"}
PORTAL_AGENCY = "000.00.00.H99"


class Recorder:
    """A bare HTTP endpoint for the adapters' side: records each request, answers ``answer(body)`` as JSON.

    It knows nothing of any protocol (the test writes the answer), so what an adapter sent is checked
    against the vectors above and not against the sandbox's fakes.
    """

    def __init__(self, answer):
        from sandbox.fakes.server import FakeServer, json_response

        recorder = self

        class Endpoint(FakeServer):
            def app(self, request):
                body = request.get_json(silent=True)
                recorder.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})
                return json_response(recorder.answer(body))

        self.answer, self.requests = answer, []
        self._server = Endpoint()

    def __enter__(self):
        self._server.start()
        self.base_url = self._server.base_url
        return self

    def __exit__(self, *exc_info):
        self._server.stop()
