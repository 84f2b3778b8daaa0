"""The dashboard's pages: Streamlit scripts run by the router (UI only)."""
