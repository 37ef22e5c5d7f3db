pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

// A read-only table over a DictListModel: columns are [role, heading, width (-1 fills)].
ColumnLayout {
    id: table
    property var model
    property var columns: []
    property bool follow: false
    spacing: 0

    RowLayout {
        Layout.fillWidth: true
        Layout.leftMargin: 4
        Repeater {
            model: table.columns
            Label {
                required property var modelData
                text: modelData[1]
                font.bold: true
                Layout.preferredWidth: modelData[2] > 0 ? modelData[2] : 100
                Layout.fillWidth: modelData[2] < 0
                elide: Text.ElideRight
            }
        }
    }
    Rectangle { Layout.fillWidth: true; implicitHeight: 1; color: table.palette.mid }
    ListView {
        id: list
        Layout.fillWidth: true
        Layout.fillHeight: true
        clip: true
        model: table.model
        ScrollBar.vertical: ScrollBar {}
        onCountChanged: if (table.follow) positionViewAtEnd()
        delegate: Rectangle {
            id: rowItem
            required property int index
            required property var model
            width: list.width
            height: cells.implicitHeight + 4
            color: index % 2 ? palette.alternateBase : palette.base
            RowLayout {
                id: cells
                anchors.fill: parent
                anchors.leftMargin: 4
                Repeater {
                    model: table.columns
                    Label {
                        required property var modelData
                        text: rowItem.model[modelData[0]] === undefined ? "" : String(rowItem.model[modelData[0]])
                        Layout.preferredWidth: modelData[2] > 0 ? modelData[2] : 100
                        Layout.fillWidth: modelData[2] < 0
                        elide: Text.ElideRight
                        font.family: "monospace"
                        font.pixelSize: 12
                    }
                }
            }
        }
        Label {
            anchors.centerIn: parent
            visible: list.count === 0
            opacity: 0.6
            text: "Nothing yet."
        }
    }
}
