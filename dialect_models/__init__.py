"""Speech-model manifest, per-dialect domain vocabulary and the provisioning behind ``assistant models``."""
