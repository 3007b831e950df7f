"""What a trained model learned: projections, fold-in of a new user, per-movie views."""
