"""Pure rules that both models and services use (field types and their values).

Nothing here touches the database or HTTP, and nothing here imports from the layers above.
"""
