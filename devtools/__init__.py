"""Local stand-ins for what cannot run on a development machine (the providers' HTTP servers), shared by the
tests and the benchmarks. Not part of the app: nothing in app.py, pages/, api/, components/ or services/
imports it."""
