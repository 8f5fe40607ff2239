"""geocausal subpackage."""
