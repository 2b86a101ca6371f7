"""The reconciliation a finance engineer would write by hand with pandas (the bench's baseline).

    python bench/pandas_baseline.py DATABASE_URL SETTLEMENT_CSV

Loads the gateway's payments with ``read_sql`` and the file with ``read_csv``,
merges them and counts each kind of difference. It changes nothing in the
database: it only finds what ``payment.recon_cli`` finds and fixes.
"""
import sys
import time

import pandas as pd
import sqlalchemy as sa

STATUSES = ["success", "failed", "refunded"]
VN = "Asia/Ho_Chi_Minh"


def main(url, path):
    started = time.monotonic()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    local = pd.read_sql(
        "SELECT txn_ref, amount AS local_amount, status AS local_status, paid_at AS local_paid_at "
        "FROM payments WHERE gateway = 'vnpay'", engine)
    settlement = pd.read_csv(path, dtype=str, keep_default_na=False)
    settlement["gateway_amount"] = pd.to_numeric(settlement["amount"], errors="coerce")
    settlement["gateway_paid_at"] = pd.to_datetime(settlement["paid_at"], errors="coerce", utc=True, format="ISO8601")
    bad = (settlement["txn_ref"] == "") | settlement["gateway_amount"].isna() | ~settlement["status"].isin(STATUSES) | (
        settlement["gateway_paid_at"].isna() & (settlement["status"] != "failed"))
    malformed = settlement[bad]
    rows = settlement[~bad].rename(columns={"status": "gateway_status"})
    merged = rows.merge(local, on="txn_ref", how="outer", indicator=True)
    missing_locally = merged[merged["_merge"] == "left_only"]
    only_local = merged[merged["_merge"] == "right_only"]
    dates = set(rows["gateway_paid_at"].dt.tz_convert(VN).dt.date.dropna())
    missing_at_gateway = only_local[(only_local["local_status"] == "succeeded")
                                    & only_local["local_paid_at"].dt.tz_convert(VN).dt.date.isin(dates)
                                    & ~only_local["txn_ref"].isin(malformed["txn_ref"])]
    both = merged[merged["_merge"] == "both"]
    amount_mismatch = both[both["gateway_amount"] != both["local_amount"]]
    same = both[both["gateway_amount"] == both["local_amount"]]
    to_fix = same[(same["gateway_status"] == "success") & same["local_status"].isin(["pending", "expired"])]
    agree = ((same["gateway_status"] == "success") & same["local_status"].isin(["succeeded", "refund_pending"])) | (
        (same["gateway_status"] == "failed") & same["local_status"].isin(["failed", "expired"])) | (
        (same["gateway_status"] == "refunded") & (same["local_status"] == "refunded"))
    status_mismatch = same[~agree & ~same.index.isin(to_fix.index)]
    print(f"pandas: rows {len(settlement):,}, matched {int(agree.sum()):,}, to fix {len(to_fix):,}, "
          f"missing_locally {len(missing_locally):,}, missing_at_gateway {len(missing_at_gateway):,}, "
          f"amount_mismatch {len(amount_mismatch):,}, status_mismatch {len(status_mismatch):,}, "
          f"malformed {len(malformed):,} in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
