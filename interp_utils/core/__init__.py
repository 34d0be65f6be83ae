"""Infrastructure every lesson uses: run-time switches, hook names, model loading, the footprint check, plots, the
reproduction table and the normalised metric."""
