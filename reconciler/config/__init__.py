"""Configuration: pydantic models of the desired state, YAML loading with positions, schema export."""
