"""The study report, built only from what MLflow holds: ``runs`` (which runs count), ``statistics`` (two-level
bootstrap intervals and paired differences), ``tables`` (numbers and conclusions), ``render`` (markdown, html,
figures). ``melanoma-lab report --study NAME`` is the command line."""
