"""The course around the lessons: exercise checks, learner copies, the reproduce command, the Colab set-up."""
