"""Chat page."""

import streamlit as st

st.title("Chat")
