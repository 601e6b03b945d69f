"""The built-in demo model: a tiny real ``gpt_oss`` model trained by our own code.

``corpus`` writes the Harmony conversations, ``train`` fits the model on them with the loss
restricted to the corpus vocabulary, and ``build`` turns the compact weights into a normal model
folder in the user cache dir (from the weights shipped in the package, or by training anew).
"""
