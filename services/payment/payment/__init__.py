"""Payment service (Nameko name ``payment``): VNPay and MoMo charges, IPNs, queries, refunds."""
