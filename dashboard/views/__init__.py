"""The dashboard's pages: Streamlit scripts the router runs (UI only)."""
