"""Rating data: loading, synthetic generation and splitting."""
