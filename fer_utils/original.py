"""The original report's own figures and settings, quoted: the one place where the book's numbers are typed."""

# Its final epoch of training: loss and accuracy on the training data and on its validation data, which it does
# not name (FER2013's PublicTest, or a part of Training held out as a course's train.csv would force).
FINAL_EPOCH = {"loss": 0.6485, "accuracy": 0.7597, "val_loss": 1.0013, "val_accuracy": 0.6510}
# The training settings it states, and those it leaves unstated (each build chooses them: chapter 2's table).
STATED = {"optimiser": "Adam", "learning rate": "0.001", "beta_1, beta_2": "0.9, 0.99", "loss": "cross-entropy"}
UNSTATED = ("learning-rate schedule", "epochs", "batch size", "augmentation", "validation images", "optimizer state")
