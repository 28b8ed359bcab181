"""Offline use of the pipeline: scene graphs of image files and videos, written to disk.

* :mod:`.inputs` expands command-line inputs (files, folders, videos) and reads frames;
* :mod:`.scene_graph_json` defines the JSON document written per image / video frame;
* :mod:`.graph_picture` draws a scene graph as a node-link picture (PNG);
* :mod:`.infer` runs a :class:`~dsflash_ros.runtime.pipeline.Pipeline` over the inputs.
"""
