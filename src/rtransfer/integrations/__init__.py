"""rtransfer inside other tools' training loops: `integrations.trl.TransferCallback` for TRL and transformers
trainers (`rtransfer watch` covers the others through their checkpoint folders)."""
