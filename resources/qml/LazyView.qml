import QtQuick
import QtQuick.Layouts

// A view of the StackLayout, made when it is first shown and kept from then on: start-up builds
// only the view on screen (bench/ui.py, first_frame_ms).
Loader {
    readonly property bool shown: StackLayout.isCurrentItem

    active: false
    onShownChanged: if (shown) active = true
    Component.onCompleted: if (shown) active = true
}
