"""Operations shared by the backbones, the HVL modules and the losses: attention, multi-scale
deformable attention, scanned layers, position embeddings, point sampling."""
