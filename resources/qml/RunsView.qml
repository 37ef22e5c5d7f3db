pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

Item {
    id: view
    required property Runs runs
    objectName: "runsView"

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 12

        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            Label {
                objectName: "runsHeader"
                text: "Shared run history: " + view.runs.model.count + (view.runs.model.count === 1 ? " run" : " runs") + (view.runs.status ? " \u2014 " + view.runs.status : "")
                font.bold: true
            }
            // Column headings
            RowLayout {
                Layout.fillWidth: true
                Layout.leftMargin: 6
                Label { text: "When"; Layout.preferredWidth: 70; font.bold: true }
                Label { text: "Who"; Layout.preferredWidth: 90; font.bold: true }
                Label { text: "Kernel"; Layout.fillWidth: true; font.bold: true }
                Label { text: "Where"; Layout.preferredWidth: 70; font.bold: true }
                Label { text: "Size"; Layout.preferredWidth: 80; font.bold: true; horizontalAlignment: Text.AlignRight }
                Label { text: "Time"; Layout.preferredWidth: 80; font.bold: true; horizontalAlignment: Text.AlignRight }
            }
            Rectangle { Layout.fillWidth: true; implicitHeight: 1; color: view.palette.mid }
            ListView {
                id: list
                objectName: "runsList"
                Accessible.name: "Run history"
                Layout.fillWidth: true
                Layout.fillHeight: true
                clip: true
                model: view.runs.model
                currentIndex: view.runs.selected
                keyNavigationEnabled: true
                focus: true
                onCurrentIndexChanged: view.runs.select(currentIndex)
                ScrollBar.vertical: ScrollBar {}
                delegate: ItemDelegate {
                    id: row
                    required property int index
                    required property string when
                    required property string user
                    required property string kernel
                    required property string where
                    required property string size
                    required property string elapsed
                    width: list.width
                    highlighted: ListView.isCurrentItem
                    Accessible.name: kernel + " by " + user + ", " + where + ", " + elapsed
                    onClicked: view.runs.select(index)
                    contentItem: RowLayout {
                        Label { text: row.when; Layout.preferredWidth: 70 }
                        Label { text: row.user; Layout.preferredWidth: 90; elide: Text.ElideRight }
                        Label { text: row.kernel; Layout.fillWidth: true; elide: Text.ElideRight }
                        Label { text: row.where; Layout.preferredWidth: 70 }
                        Label { text: row.size; Layout.preferredWidth: 80; horizontalAlignment: Text.AlignRight }
                        Label { text: row.elapsed; Layout.preferredWidth: 80; horizontalAlignment: Text.AlignRight }
                    }
                }
                Label {
                    anchors.centerIn: parent
                    visible: list.count === 0
                    opacity: 0.6
                    text: "No runs yet. Run a kernel in the Workbench (Ctrl+1, then Ctrl+R)."
                }
            }
        }

        GroupBox {
            title: "Details"
            Layout.preferredWidth: 340
            Layout.fillHeight: true
            ScrollView {
                anchors.fill: parent
                TextArea {
                    objectName: "runDetails"
                    readOnly: true
                    text: view.runs.details !== "" ? view.runs.details : "Select a run to see its details."
                    font.family: "monospace"
                    wrapMode: TextEdit.Wrap
                    Accessible.name: "Run details"
                    background: null
                }
            }
        }
    }
}
