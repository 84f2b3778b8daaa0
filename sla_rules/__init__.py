"""SLA rules as code, the evaluator that categorizes, alerts that reach on-call."""
