"""Streamlit-side helpers shared by the pages (state keys, cached loaders, charts, job client).

Dependencies point one way: pages -> ui -> mfcore. Nothing in mfcore imports this.
"""
