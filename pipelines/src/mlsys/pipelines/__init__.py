"""The local workflow runner (`python -m mlsys.pipelines run FILE.yaml`): a test and
development tool for the platform's Argo YAML; Argo on Kubernetes stays the engine."""
