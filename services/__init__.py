"""Everything that is not UI. Nothing here imports streamlit, except config loading (st.secrets)."""
