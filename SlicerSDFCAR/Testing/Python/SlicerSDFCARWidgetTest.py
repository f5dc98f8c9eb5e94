"""In-Slicer test of the SlicerSDFCAR widget: parameter node bindings, frame selector and
live validation. Needs the Slicer application (run by ctest or ``slicer.testing``)."""

import unittest

import numpy as np

import slicer


class SlicerSDFCARWidgetTest(unittest.TestCase):
    """The GUI edits the parameter node and validates the two views while the user types."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()
        slicer.util.selectModule("SlicerSDFCAR")
        self.widget = slicer.util.getModuleWidget("SlicerSDFCAR")
        self.ui = self.widget.ui

    def _settle(self) -> None:
        for _ in range(3):  # deferred view updates run from the event loop
            slicer.app.processEvents()

    def _select(self, index: int, frames: int) -> object:
        node = slicer.util.addVolumeFromArray(np.ones((frames, 64, 80), np.float32),
                                              name=f"view{index}")
        getattr(self.ui, f"view{index}VolumeSelector").setCurrentNode(node)
        self._settle()
        return node

    def test_views_are_validated_live_and_stored_in_the_parameter_node(self) -> None:
        self._select(1, frames=1)
        self._select(2, frames=1)
        parameters = self.widget._parameterNode
        self.assertEqual(self.ui.view1GeometryLabel.text.split(";")[0],
                         "no DICOM tags: enter the angles and distances")
        self.ui.view1PrimaryAngleSpinBox.value, self.ui.view1SecondaryAngleSpinBox.value = 0, 85
        self.ui.view2PrimaryAngleSpinBox.value, self.ui.view2SecondaryAngleSpinBox.value = 90, 85
        self._settle()
        self.assertEqual(parameters.view2.primaryAngle, 90)
        self.assertIn("apart", self.ui.validationLabel.text)  # 90 deg of primary, 7 deg apart
        self.assertTrue(self.ui.applyButton.enabled)  # a warning does not block Apply
        self.ui.view2SourceToIsocenterSpinBox.value = 2 * self.ui.view2SourceToDetectorSpinBox.value
        self._settle()
        self.assertIn("must be less than", self.ui.validationLabel.text)
        self.assertFalse(self.ui.applyButton.enabled)

    def test_the_preset_is_the_command_lines_choice_for_the_input(self) -> None:
        self.assertEqual(self.widget._parameterNode.preset, "automatic")
        self.assertEqual(self.ui.presetComboBox.currentText, "automatic")

    def test_frame_selector_follows_the_number_of_frames(self) -> None:
        self._select(1, frames=1)
        self.assertFalse(self.ui.view1FrameSpinBox.enabled)
        self._select(1, frames=6)
        self.assertTrue(self.ui.view1FrameSpinBox.enabled)
        self.assertEqual(self.ui.view1FrameSpinBox.maximum, 5)
        self.ui.view1FrameSpinBox.value = 4
        self._settle()
        self.assertEqual(self.widget._parameterNode.view1.frame, 4)
