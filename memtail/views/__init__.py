"""What people read: text tables, PNG plots, the summary of a run, and exports."""
