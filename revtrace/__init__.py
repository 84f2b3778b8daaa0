"""revtrace: business transaction tracing for CRM, billing and ERP integrations."""
