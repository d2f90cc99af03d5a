"""Example graphs shipped with lg-deploy so a new install can run something real at once."""
