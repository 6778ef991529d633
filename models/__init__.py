"""Interest models: data, the multi-view sequence encoder, training and offline evaluation."""
