"""The numbers every chapter shares, each computed by one function: churn and renewal
(``outcomes``), customer features by source table (``features``), the metric catalogue
(``metrics``) and tiers, RFM and date windows (``segments``)."""
