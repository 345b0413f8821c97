"""The ``families`` suite's workloads: one small problem for each workload family AlgoPerf measures.

AlgoPerf (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms", Table 1) scores
training algorithms on eight families: image classification (ResNet-50 on ImageNet, and ViT),
language modelling, translation (WMT), graph property prediction (OGBG-MOLPCBA), click-through
prediction (Criteo 1TB DLRM), MRI reconstruction (fastMRI U-Net) and speech recognition
(LibriSpeech Conformer and DeepSpeech). An optimizer ranking on toys transfers only if the toys
exercise what those families do: BatchNorm, attention, embeddings with rare rows, sequence
losses. Each workload here is small enough to train to its target in seconds on one core:

==============  ============================================  ==================================
name            stands for                                    data, metric
==============  ============================================  ==================================
digits-resnet   ImageNet ResNet-50 / CIFAR ResNet (BatchNorm)  scikit-learn digits; val loss
digits-vit      ImageNet ViT                                   scikit-learn digits, 4x4 patches; val loss
charlm-tiny     the language models (nanoGPT, AlgoPerf LM)     torch's own sources; bpc
translate       WMT17 de-en Transformer (encoder-decoder)      synthetic reordering grammar; val loss
molgraph        OGBG-MOLPCBA GNN                               synthetic molecule-like graphs; val loss
clicks          Criteo 1TB DLRM (large embedding tables)       synthetic Zipf click logs; val logloss
digits-unet     fastMRI knee U-Net                             digits from undersampled k-space; SSIM
mnist1d-ctc     LibriSpeech Conformer / DeepSpeech (CTC)       MNIST-1D utterances; digit error rate
==============  ============================================  ==================================

Each module says what its data, model, metric and recipe are and how they were measured.
"""

from . import resnet, vit, lm, translate, graph, clicks, unet, ctc  # noqa: F401,I001  (register the workloads)
