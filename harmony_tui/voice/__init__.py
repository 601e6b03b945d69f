"""Push-to-talk voice, UI-free: audio in/out, end-pointing, speech-to-text, text-to-speech.

Every module imports its heavy engine (sounddevice, webrtcvad, faster_whisper, piper, mlx_audio)
inside the function that needs it, so importing this package costs nothing. The pieces:

- ``audio_io``: ``AudioSource`` / ``AudioSink`` and the file and memory implementations;
  ``devices``: the sounddevice (PortAudio) source, sink and device listing.
- ``vad``: voice activity end-pointing and the threaded ``Recorder`` (one listening session).
- ``stt`` / ``tts``: the engines behind ``SpeechToText`` / ``TextToSpeech``; ``weights`` finds
  offline weights shipped as Python packages.
- ``sentences`` + ``speakable`` + ``speaker``: a streamed Markdown answer spoken sentence by
  sentence (``SpokenAnswer``), with barge-in.
- ``settings``: the ``voice:`` section of the configs; ``mic_check``: ``harmony-tui mic-check``.
"""
