"""The paper's analyses on stored experiments: comparisons across trials and models, removal."""
