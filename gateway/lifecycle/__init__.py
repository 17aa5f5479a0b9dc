"""The data's whole life after it has passed: what a controller and its DPO ask of the
processor (GDPR Art. 28(3)(f), 30(2), 33(2)), answered from the ledger and the
configuration."""
