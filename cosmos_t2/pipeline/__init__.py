"""One job from a validated spec to its video: inputs -> conditioning -> chunks -> outputs + sidecar."""
