"""Deploy orchestrator for the Syria Super-App: catalog, rendering, validation and rollout."""
