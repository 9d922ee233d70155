"""Configuration: the schema every ``conf/`` YAML merges into (schema), composing a run's config the way the
command line does (compose), and building plug-ins from ``_target_`` nodes checked against their signatures
(plugins)."""
