"""A user's own image folder: the pooling heads compared on it, fine-tuning on it, exporting and predicting."""
