"""Training: the streaming trainer and the steppers that update the model's weights."""
