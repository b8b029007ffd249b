"""AIAnimals A/B test proxy: traffic split between ranking variants, and its report."""
