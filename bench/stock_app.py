"""The stock Streamlit chat pattern (st.chat_input + st.write_stream over the openai SDK), for bench/stream.py
to measure beside this app against the same wire server. Not part of the app."""

import os

import streamlit as st
from openai import OpenAI

client = OpenAI(base_url=os.environ["BENCH_BASE_URL"], api_key="sk-bench")

if prompt := st.chat_input("Message"):
    with st.chat_message("user"):
        st.markdown(prompt)
    with st.chat_message("assistant"):
        stream = client.chat.completions.create(
            model="wire-model", messages=[{"role": "user", "content": prompt}], stream=True
        )
        st.write_stream(stream)
