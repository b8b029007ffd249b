"""The no-animal classifier's names, shared by what trains and serves it
(`mlsys.violation_detection`) and what watches it (`mlsys.monitoring`)."""

CLASSIFIER_MODEL_NAME = "aianimals_no_animal_violation"
CLASSIFIER_EXPERIMENT = "aianimals_violation_detection"
THRESHOLD_TAG = "threshold"  # on each model version: the threshold chosen with it
# Logged with every version: its validation photos' scores and labels (JSON: lists
# `probability` and `no_animal`), which the drift check reads the classifier's rates from.
DRIFT_REFERENCE_ARTIFACT = "drift_reference.json"
