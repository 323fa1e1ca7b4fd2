"""Job specs: parse JSON/JSONC/JSONL, read typed fields, validate into a `Spec`."""
