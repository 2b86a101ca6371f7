from tests.helpers import rpc_proxy


def test_submit_and_get(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        dossier = rpc.dossier.submit_dossier("LLTP-01", applicant)
        assert dossier["status"] == "submitted"
        assert dossier["applicant"]["phone"] == "0912345678"
        assert rpc.dossier.get_dossier(dossier["code"])["code"] == dossier["code"]
